"""The engine on a multi-step plan, with a fake runner and a fake store (tests/unit/build/fakes.py):
what runs, what is cached, the layers and the history an image gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.engine import BuildOptions, Engine
from minibuild.dockerfile import parser
from minibuild.dockerfile.plan import make_plan
from minibuild.errors import BuildError, BuildfileError
from tests.unit.build.fakes import FakeRunner, FakeStore, Reporter

EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # Docker's

BUILDFILE = """FROM scratch
ENV GREETING=hello
RUN make a
LABEL version=1
RUN true
WORKDIR /app
COPY a.txt ./
"""


def script(upper: Path, argv: tuple[str, ...]) -> int:
    """`make NAME` writes /NAME; `fail N` exits N; anything else changes nothing."""
    words = argv[-1].split()
    if words[0] == "make":
        (upper / words[1]).write_text(words[1])
    return int(words[1]) if words[0] == "fail" else 0


@pytest.fixture
def store(tmp_path) -> FakeStore:
    return FakeStore(tmp_path / "store")


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("alpha")
    return ctx


def build(store, context, text=BUILDFILE, runner=None, build_args=None, **options):
    """Plan and build `text`; the engine, its image, the runner and what was reported."""
    runner = runner or FakeRunner(script)
    reporter = Reporter()
    plan = make_plan(parser.parse(text), build_args or {})
    engine = Engine(store, runner, BuildContext(context), reporter,
                    BuildOptions(build_args=build_args or {}, **options))
    return engine, engine.build(plan), runner, reporter


def test_each_filesystem_change_is_a_layer_and_each_instruction_a_history_entry(store, context):
    _, image, runner, reporter = build(store, context)
    assert [h.created_by for h in image.config.history] == [
        "ENV GREETING=hello", "RUN /bin/sh -c make a", "LABEL version=1", "RUN /bin/sh -c true",
        "WORKDIR /app", "COPY a.txt ./"]
    # RUN true wrote nothing: BuildKit's empty layer all the same (docker build's diff_ids)
    assert [h.empty_layer for h in image.config.history] == [True, False, True, False, False, False]
    assert len(image.layers) == 4 and len(image.config.diff_ids) == 4
    assert reporter.notes[4] == "no changes: an empty layer"
    assert str(image.layers[1].diff_id) == EMPTY_TAR_DIFF_ID
    assert [r.argv[-1] for r in runner.ran] == ["make a", "true"]
    assert runner.ran[0].env["GREETING"] == "hello"
    assert runner.ran[1].lowers == (store.layer_path(image.layers[0].diff_id),)  # top first
    assert image.config.config.working_dir == "/app"
    assert (store.layer_path(image.layers[3].diff_id) / "app" / "a.txt").read_text() == "alpha"
    assert all(store.has_blob(layer.descriptor.digest) for layer in image.layers)
    assert set(store.summaries) == {layer.diff_id for layer in image.layers}
    assert reporter.steps[0] == "1/7 FROM scratch" and reporter.steps[-1] == "7/7 COPY a.txt ./"
    assert b"ran make a" in reporter.printed


def test_a_rebuild_answers_every_step_from_the_cache(store, context):
    _, first, _, _ = build(store, context)
    _, again, runner, reporter = build(store, context)
    assert runner.ran == [] and runner.calls == 0
    assert reporter.notes == ["", "", "CACHED", "", "CACHED", "CACHED", "CACHED"]
    assert again.config.diff_ids == first.config.diff_ids
    assert again.config.history == first.config.history  # dates too: they come from the cache
    assert again.config.created == first.config.created


def test_no_cache_runs_every_step_again(store, context):
    build(store, context)
    _, _, runner, reporter = build(store, context, no_cache=True)
    assert len(runner.ran) == 2 and "CACHED" not in reporter.notes


def test_a_changed_source_misses_from_its_copy_on(store, context):
    _, first, _, _ = build(store, context)
    (context / "a.txt").write_text("bravo")
    _, second, runner, reporter = build(store, context)
    assert runner.ran == [] and runner.calls == 1  # only the COPY ran
    assert reporter.notes[-1] != "CACHED"
    assert second.config.diff_ids[:3] == first.config.diff_ids[:3]
    assert second.config.diff_ids[3] != first.config.diff_ids[3]


def test_a_stored_base_image_gives_its_layers_and_history(store, context):
    base = store.add_image("base:1", {"etc/os": "fake"})
    engine, image, runner, _ = build(store, context, "FROM base:1\nRUN make b\n")
    assert runner.ran[0].lowers == (store.layer_path(store.images["base:1"][1].layers[0].diff_id),)
    assert engine.images_used == [base]
    assert [h.created_by for h in image.config.history] == ["base base:1", "RUN /bin/sh -c make b"]
    assert len(image.layers) == 2


def test_a_missing_base_is_an_error_at_its_line(store, context):
    with pytest.raises(BuildError, match="image not found in the store") as info:
        build(store, context, "FROM nothing:here\nRUN true\n")
    assert info.value.line == 1


def test_a_failing_run_stops_the_build_and_is_not_cached(store, context):
    text = "FROM scratch\nRUN make a\nRUN fail 3\n"
    with pytest.raises(BuildError, match="exit code 3") as info:
        build(store, context, text)
    assert info.value.exit_status == 3 and info.value.line == 3
    ok = FakeRunner(lambda upper, argv: 0)
    _, _, runner, reporter = build(store, context, text, runner=ok)
    assert [r.argv[-1] for r in runner.ran] == ["fail 3"]  # the first RUN was cached
    assert reporter.notes[1] == "CACHED"


def test_squash_merges_the_added_layers_into_one(store, context):
    store.add_image("base:1", {"etc/os": "fake"})
    text = "FROM base:1\nRUN make a\nRUN make b\n"
    _, image, _, reporter = build(store, context, text, squash=True)
    assert len(image.layers) == 2  # the base's layer stays shared
    assert [h.empty_layer for h in image.config.history] == [False, True, False]
    merged = store.layer_path(image.layers[1].diff_id)
    assert sorted(p.name for p in merged.iterdir()) == ["a", "b"]
    assert "squash" in reporter.phases


def test_source_date_epoch_dates_the_image_and_its_history(store, context):
    _, image, _, _ = build(store, context, source_date_epoch=10)
    assert image.config.created == "1970-01-01T00:00:10Z"
    assert {h.created for h in image.config.history} == {"1970-01-01T00:00:10Z"}


def test_unused_build_args_are_named(store, context):
    text = "FROM scratch\nARG USED\nRUN true\n"
    engine, _, _, _ = build(store, context, text, build_args={"USED": "1", "EXTRA": "2"})
    plan = make_plan(parser.parse(text), {"USED": "1", "EXTRA": "2"})
    assert engine.unused_build_args(plan) == ["EXTRA"]


def test_builtin_build_args_are_never_unused(store, context):
    args = {"HTTP_PROXY": "http://proxy:3128", "TARGETARCH": "amd64", "SOURCE_DATE_EPOCH": "1",
            "BUILDKIT_SANDBOX_HOSTNAME": "box", "EXTRA": "2"}
    text = "FROM scratch\nRUN true\n"
    engine, _, _, _ = build(store, context, text, build_args=args)
    assert engine.unused_build_args(make_plan(parser.parse(text), args)) == ["EXTRA"]


def test_args_get_history_entries_and_runs_their_buildkit_prefix(store, context):
    text = "FROM scratch\nARG A=1 B\nENV C=3\nARG C\nRUN make x\nRUN [\"true\"]\n"
    _, image, runner, _ = build(store, context, text, build_args={"B": "two"})
    assert [h.created_by for h in image.config.history] == [
        "ARG A=1 B=two", "ENV C=3", "ARG C", "RUN |3 A=1 B=two C=3 /bin/sh -c make x",
        'RUN |3 A=1 B=two C=3 ["true"]']
    assert [h.empty_layer for h in image.config.history] == [True, True, True, False, False]
    assert {k: runner.ran[0].env[k] for k in "ABC"} == {"A": "1", "B": "two", "C": "3"}


def test_proxy_args_reach_run_but_not_its_key_or_history(store, context):
    text = "FROM scratch\nRUN make x\n"
    _, first, runner, _ = build(store, context, text, build_args={"http_proxy": "http://a:1"})
    process = runner.ran[0].process
    assert dict(process.secret_env) == {"http_proxy": "http://a:1"}
    assert "http_proxy" not in runner.ran[0].env  # the keyed environment
    assert first.config.history[-1].created_by == "RUN /bin/sh -c make x"
    # another proxy is no cache miss (the reference's example)
    _, second, runner, reporter = build(store, context, text, build_args={"http_proxy": "http://b:2"})
    assert runner.ran == [] and reporter.notes[-1] == "CACHED"
    # declared with ARG, it is an ordinary arg: keyed, in the history
    _, third, runner, _ = build(store, context, "FROM scratch\nARG http_proxy\nRUN make x\n",
                                build_args={"http_proxy": "http://b:2"})
    assert runner.ran[0].env["http_proxy"] == "http://b:2"
    assert third.config.history[-1].created_by == "RUN |1 http_proxy=http://b:2 /bin/sh -c make x"


def test_sandbox_hostname_build_arg_names_the_run_host_and_keys_it(store, context):
    text = "FROM scratch\nRUN make x\n"
    _, _, runner, _ = build(store, context, text)
    assert runner.ran[0].process.hostname == "minibuild"
    _, _, runner, _ = build(store, context, text, build_args={"BUILDKIT_SANDBOX_HOSTNAME": "box"})
    assert runner.ran[0].process.hostname == "box"  # ran again: the hostname is in the key


def test_a_shebang_heredoc_is_handed_to_the_sandbox_as_a_dev_pipes_file(store, context):
    _, image, runner, _ = build(store, context, "FROM scratch\nRUN <<EOT\n#!/bin/sh\nmake x\nEOT\n")
    assert runner.ran[0].argv == ("/bin/sh", "-c", "/dev/pipes/EOT")
    assert runner.ran[0].process.pipes == (("EOT", "#!/bin/sh\nmake x\n"),)
    _, _, runner, _ = build(store, context, "FROM scratch\nRUN <<EOT\n#!/bin/sh\nmake y\nEOT\n")
    assert len(runner.ran) == 1  # another script is another key


def test_scratch_gets_docker_s_path_and_workdir(store, context):
    _, image, runner, _ = build(store, context, "FROM scratch\nRUN make x\n")
    assert image.config.config.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    assert image.config.config.working_dir == "/"


def test_copy_from_names_an_earlier_stage_or_a_stored_image(store, context):
    text = "FROM scratch AS first\nCOPY --from=later /a /a\nFROM scratch AS later\nFROM first\n"
    with pytest.raises(BuildfileError, match="can only copy from an earlier stage") as info:
        build(store, context, text)
    assert info.value.line == 2
    with pytest.raises(BuildError, match="COPY missing:1: image not found in the store"):
        build(store, context, "FROM scratch\nCOPY --from=missing:1 /a /a\n")


def test_run_security_insecure_needs_the_entitlement(store, context):
    # the reference: insecure "is equivalent to docker run --privileged", and needs the
    # security.insecure entitlement; sandbox is the default, a no-op
    text = "FROM scratch\nRUN --security=insecure make x\n"
    with pytest.raises(BuildfileError, match=r"^Buildfile:2:1: RUN --security=insecure is not "
                                             r"allowed: start the build with `--allow security"):
        build(store, context, text)
    _, _, runner, _ = build(store, context, text, allow_insecure=True)
    assert runner.ran[0].process.privileged is True
    _, _, runner, _ = build(store, context, "FROM scratch\nRUN --security=sandbox make x\n")
    assert runner.ran[0].process.privileged is False and len(runner.ran) == 1  # another key
    with pytest.raises(BuildfileError, match="RUN --security=root: want sandbox or insecure"):
        build(store, context, "FROM scratch\nRUN --security=root true\n", allow_insecure=True)


def test_a_stage_based_on_a_stage_inherits_its_args(store, context):
    # the reference's ARG "Scope": inherited by stages based on that stage, not by others
    text = ("FROM scratch AS base\nARG V=1\nFROM base AS child\nRUN make x\n"
            "FROM scratch AS other\nRUN --mount=from=child,target=/c make y\n")
    _, image, runner, _ = build(store, context, text)
    assert runner.ran[0].env["V"] == "1" and "V" not in runner.ran[1].env
    history = [h.created_by for h in image.config.history]
    assert history == ["RUN /bin/sh -c make y"]
    _, image, _, _ = build(store, context, "FROM scratch AS base\nARG V=1\nFROM base\nRUN make x\n")
    assert [h.created_by for h in image.config.history] == ["ARG V=1", "RUN |1 V=1 /bin/sh -c make x"]


def test_flags_of_instructions_that_take_none_are_ignored(store, context):
    # README's "Differences from docker build": BuildKit refuses these
    _, image, _, _ = build(store, context, "FROM scratch\nWORKDIR --weird=1 /x\nENV --a=b C=d\n")
    assert image.config.config.working_dir == "/x" and "C=d" in image.config.config.env


def _engine_with_puller(store, context, puller):
    plan_text = "FROM debian:12\nRUN make a\n"
    engine = Engine(store, FakeRunner(script), BuildContext(context), Reporter(), BuildOptions(),
                    puller=puller)
    return engine, make_plan(parser.parse(plan_text), {})


def test_a_base_the_store_lacks_comes_from_the_puller(store, context):
    asked = []

    def puller(text):
        asked.append(text)
        return store.add_image("debian:12", {"etc/debian_version": "12"})

    engine, plan = _engine_with_puller(store, context, puller)
    image = engine.build(plan)
    assert asked == ["debian:12"] and len(image.layers) == 2


def test_a_failed_pull_is_one_line_at_the_from(store, context):
    from minibuild.errors import ImageNotFound

    def puller(text):
        raise ImageNotFound("cannot pull debian:12: cannot reach docker.io (registry-1.docker.io): "
                            "the host name does not resolve")

    engine, plan = _engine_with_puller(store, context, puller)
    with pytest.raises(BuildError) as info:
        engine.build(plan)
    assert info.value.line == 1
    assert info.value.message == ("FROM debian:12: image not found in the store, and cannot pull "
                                  "debian:12: cannot reach docker.io (registry-1.docker.io): the host "
                                  "name does not resolve")


def test_progress_shows_a_from_image_by_its_full_name_and_a_stage_as_written(store, context):
    store.add_image("base:1", {"b.txt": "b"})
    text = "ARG V=1\nFROM base:$V AS build\nFROM build\n"
    _, _, _, reporter = build(store, context, text=text)
    assert reporter.steps == ["1/2 FROM docker.io/library/base:1", "2/2 FROM build"]
def test_a_cached_no_layer_entry_of_a_filesystem_step_runs_again(store, context):
    """Entries recorded before unchanged steps made an empty layer would make no layer:
    the step runs again, so the image has docker build's diff_ids whatever the cache holds."""
    from minibuild.build.cache import Cache, CacheEntry

    build(store, context)
    cache = Cache(store)
    for key, entry in cache.entries():
        if entry.layer is not None and str(entry.layer.diff_id) == EMPTY_TAR_DIFF_ID:
            cache.put(key, CacheEntry(None, entry.history))
    _, again, runner, reporter = build(store, context)
    assert [r.argv[-1] for r in runner.ran] == ["true"] and len(again.layers) == 4
