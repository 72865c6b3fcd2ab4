"""Prepared filesystem steps (steps.py) with a fake runner: what decides a step's cache key, its
history text, and what executing it asks of the runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.steps import CopySource, StepFactory
from minibuild.dockerfile import metadata, parser
from minibuild.errors import BuildError, BuildfileError
from minibuild.oci.image import ContainerConfig
from minibuild.sandbox.sandbox import RootFS
from tests.unit.build.fakes import FakeRunner

SCOPE = metadata.Scope(args=(("VERSION", "1.2"),))
CONFIG = ContainerConfig(env=("HOME=/root", "MODE=fast"), working_dir="/srv", user="app")


def instruction(line: str):
    """The one instruction of `FROM scratch` + line."""
    return parser.parse(f"FROM scratch\n{line}\n").instructions[1]


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("alpha")
    (ctx / "notes.md").write_text("notes")
    return ctx


@pytest.fixture
def rootfs(tmp_path) -> RootFS:
    dirs = [tmp_path / name for name in ("upper", "work", "merged")]
    for d in dirs:
        d.mkdir()
    return RootFS((), *dirs)


def factory(context: Path, runner=None, output=None) -> StepFactory:
    scratch = context.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    return StepFactory(runner or FakeRunner(), BuildContext(context), output or (lambda data: None),
                       lambda prefix: scratch, "host")


def test_a_run_is_keyed_on_its_argv_env_cwd_user_and_network(context):
    step = factory(context).run(instruction("RUN --network=none echo $VERSION"), CONFIG, SCOPE, "step 2/3")
    assert step.description == {"run": ["/bin/sh", "-c", "echo $VERSION"],
                                "env": [["VERSION", "1.2"], ["HOME", "/root"], ["MODE", "fast"]],
                                "cwd": "/srv", "user": "app", "network": "none"}
    assert step.created_by == "RUN /bin/sh -c echo $VERSION"
    assert step.verify is None and step.reuse is None


def test_executing_a_run_asks_the_runner_and_fails_on_its_status(context, rootfs):
    runner = FakeRunner(lambda upper, argv: 7)
    output: list[bytes] = []
    step = factory(context, runner, output.append).run(instruction("RUN make it"), CONFIG, SCOPE,
                                                       "step 2/3")
    with pytest.raises(BuildError, match="step 2/3 `RUN make it` failed with exit code 7") as info:
        step.execute(rootfs)
    assert info.value.exit_status == 7 and info.value.line == 2
    assert runner.ran[0].argv == ("/bin/sh", "-c", "make it") and runner.ran[0].user == "app"
    assert output == [b"ran make it\n"]


def test_unknown_and_unsupported_flags_are_refused_by_name(context):
    steps = factory(context)
    with pytest.raises(BuildfileError, match="unknown flag --bogus for RUN"):
        steps.run(instruction("RUN --bogus=1 true"), CONFIG, SCOPE, "s")
    with pytest.raises(BuildfileError, match="unknown flag --parents for ADD"):
        steps.copy(instruction("ADD --parents a/./b /x/"), CONFIG, SCOPE, None)
    with pytest.raises(BuildfileError, match="invalid chmod parameter: '64a'"):
        steps.copy(instruction("COPY --chmod=64a . /x/"), CONFIG, SCOPE, None)
    with pytest.raises(BuildfileError, match="--network=bridge is not supported"):
        steps.run(instruction("RUN --network=bridge true"), CONFIG, SCOPE, "s")


def test_a_copy_is_keyed_on_the_content_it_selects_and_its_shape_is_not(context):
    copy = instruction("COPY --chmod=0640 src/ /app/$VERSION/")
    first = factory(context).copy(copy, CONFIG, SCOPE, None)
    assert first.created_by == "COPY --chmod=0640 src/ /app/1.2/"
    assert first.description["dest"] == "/app/1.2/" and first.description["chmod"] == "0640"
    (context / "src" / "a.txt").write_text("bravo")
    second = factory(context).copy(copy, CONFIG, SCOPE, None)
    assert second.description["content"] != first.description["content"]
    assert second.reuse.shape == first.reuse.shape  # the reuse hint survives a content change
    assert "content" not in first.reuse.shape


def test_a_copy_executes_through_the_runner_and_rechecks_its_sources(context, rootfs):
    runner = FakeRunner()
    step = factory(context, runner).copy(instruction("COPY src/a.txt notes.md /app/"), CONFIG,
                                         SCOPE, None)
    step.execute(rootfs)
    assert (rootfs.upper / "app" / "a.txt").read_text() == "alpha"
    assert (rootfs.upper / "app" / "notes.md").read_text() == "notes"
    step.verify()  # unchanged: fine
    (context / "notes.md").write_text("changed while copying")
    with pytest.raises(BuildError, match="the build context changed while it was being copied"):
        step.verify()


def test_copy_from_a_stage_is_keyed_on_the_stage_not_the_context(context):
    source = CopySource("builder", "stage:abc", (context,))
    step = factory(context).copy(instruction("COPY --from=builder /out /app"), CONFIG, SCOPE, source)
    assert step.description["from"] == "stage:abc" and "content" not in step.description
    assert step.created_by == "COPY --from=builder /out /app"
    assert step.reuse is None and step.verify is None


def test_add_of_a_local_archive_is_not_reused(context):
    step = factory(context).copy(instruction("ADD notes.md /app/"), CONFIG, SCOPE, None)
    assert step.description["copy"] == "ADD" and step.reuse is None


def test_workdir_chains_relative_paths_and_sets_the_config(context, rootfs):
    runner = FakeRunner()
    step = factory(context, runner).workdir(instruction("WORKDIR sub/$VERSION"), CONFIG, SCOPE)
    assert step.description == {"workdir": "/srv/sub/1.2", "user": "app"}  # USER owns it
    assert step.config.working_dir == "/srv/sub/1.2" and step.created_by == "WORKDIR /srv/sub/1.2"
    step.execute(rootfs)
    assert (rootfs.upper / "srv" / "sub" / "1.2").is_dir() and runner.calls == 1


def test_a_copy_whose_sources_change_while_copying_is_refused(tmp_path):
    (tmp_path / "f").write_text("old\n")
    copy = parser.parse("FROM scratch\nCOPY f /f\n").instructions[1]
    factory = StepFactory(sandbox=None, context=BuildContext(tmp_path), output=lambda b: None,
                          scratch=lambda p: tmp_path, network="host")
    step = factory.copy(copy, ContainerConfig(), metadata.Scope(), None)
    step.verify()  # nothing changed: fine
    (tmp_path / "f").write_text("new\n")
    with pytest.raises(BuildError, match="changed while it was being copied"):
        step.verify()


def test_a_snapshot_meter_reports_bytes_and_rate_at_most_every_quarter_second():
    import io

    from minibuild.build.layermaker import Meter

    now = [0.0]
    reports: list[str] = []
    sink = io.BytesIO()
    meter = Meter(sink, reports.append, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 0.1
        meter.write(b"x" * 1_000_000)
    assert sink.getbuffer().nbytes == 4_000_000
    assert reports == ["snapshot 3MB written, 10MB/s"]  # at 0.3 s only; 0.1 and 0.2 too soon
    assert meter.rate_note(8_000_000) == ", 20MB/s"
    assert Meter(sink, reports.append, clock=lambda: 0.0).rate_note(5) == ""


@pytest.mark.parametrize("line", [
    "COPY --exclude=*.md . /app/", "COPY --exclude=*.txt . /app/", "COPY --parents src/a.txt /app/",
    "COPY --chmod=u+x . /app/", "COPY --chmod=g+x . /app/",
])
def test_exclude_parents_and_chmod_are_in_the_key_and_turn_reuse_off(context, line):
    plain = factory(context).copy(instruction("COPY . /app/"), CONFIG, SCOPE, None)
    step = factory(context).copy(instruction(line), CONFIG, SCOPE, None)
    assert step.description != plain.description
    if "--chmod" not in line:  # reuse.py walks sources as a plain COPY does
        assert step.reuse is None
    else:
        assert step.reuse is not None


def test_exclude_patterns_each_change_the_key(context):
    keys = {tuple(sorted(map(str, factory(context).copy(instruction(line), CONFIG, SCOPE,
                                                         None).description.items())))
            for line in ("COPY --exclude=*.md . /app/", "COPY --exclude=*.md --exclude=x . /app/",
                         "COPY --exclude=*.txt . /app/")}
    assert len(keys) == 3


def test_parents_in_history_as_buildkit_writes_it(context):
    step = factory(context).copy(instruction("COPY --parents --chown=1 src/./a.txt /app/"),
                                 CONFIG, SCOPE, None)
    assert step.created_by == "COPY --parents --chown=1 src/./a.txt /app/"
