"""`run_build` end to end on a temporary store with a fake runner: the stored and tagged image,
the warnings, the saved hash cache, the memo, and nothing tagged when a step fails."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from minibuild.build import memo
from minibuild.build.pipeline import BuildRequest, run_build
from minibuild.errors import BuildError, BuildfileError
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from tests.unit.build.fakes import FakeRunner, Reporter

BUILDFILE = "FROM scratch\nARG FLAVOUR=plain\nCOPY a.txt /\nRUN make-it\n"


def maker(upper: Path, argv: tuple[str, ...]) -> int:
    (upper / "made").write_text(argv[-1])
    return 0


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Buildfile").write_text(BUILDFILE)
    (ctx / "a.txt").write_text("alpha")
    for path in (ctx / "Buildfile", ctx / "a.txt", ctx):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    time.sleep(0.15)  # the ctimes just set leave the racy window: hashes and memo may keep them
    return ctx


def request(context: Path, **fields) -> BuildRequest:
    fields.setdefault("buildfile", context / "Buildfile")
    return BuildRequest(context=context, tags=(Reference.parse("app:1"),), **fields)


def test_the_image_is_stored_and_tagged_with_warnings_for_unused_args(store, context):
    runner = FakeRunner(maker)
    result = run_build(request(context, build_args={"FLAVOUR": "x", "EXTRA": "y"}), store,
                       Reporter(), runner)
    name, descriptor = store.resolve("app:1")
    assert descriptor.digest == result.digest
    image = store.load_image(descriptor)
    assert len(image.layers) == 2 and [r.argv[-1] for r in runner.ran] == ["make-it"]
    assert result.warnings == ("build args not consumed by any ARG: EXTRA",)
    saved = json.loads(next((store.root / "cache" / "stat").iterdir()).read_text())
    assert str(context / "a.txt") in saved  # the next build need not read a.txt again


def test_a_second_build_is_cached_and_gives_the_same_image(store, context):
    first = run_build(request(context), store, Reporter(), FakeRunner(maker))
    runner, reporter = FakeRunner(maker), Reporter()
    second = run_build(request(context), store, reporter, runner)
    assert second.digest == first.digest and runner.ran == []
    assert reporter.notes.count("CACHED") == 2


def test_nothing_is_tagged_when_a_step_fails(store, context):
    with pytest.raises(BuildError, match="exit code 1"):
        run_build(request(context), store, Reporter(), FakeRunner(lambda upper, argv: 1))
    assert store.tags() == []


def test_a_missing_buildfile_is_named(store, context):
    with pytest.raises(BuildfileError, match="no such Buildfile"):
        run_build(request(context, buildfile=context / "Nope"), store, Reporter(), FakeRunner())


def test_a_memo_is_written_for_a_build_that_may_have_one(store, context):
    command = memo.Command(store.root, "k" * 64)
    run_build(request(context, memo=command), store, Reporter(), FakeRunner(maker))
    assert not command.path.exists()  # the build moved the tag it wrote: no memo yet
    result = run_build(request(context, memo=command), store, Reporter(), FakeRunner(maker))
    replay = memo.lookup(command)
    assert replay is not None and replay.digest == str(result.digest)
    assert [(s.text, s.cached) for s in replay.steps] == [
        ("FROM scratch", False), ("ARG FLAVOUR=plain", False), ("COPY a.txt /", True),
        ("RUN make-it", True)]
    assert replay.tags == ("app:1",)
    (context / "a.txt").write_text("changed")
    assert memo.lookup(command) is None


def test_no_memo_for_a_buildfile_from_stdin_or_no_cache(store, context):
    run_build(request(context), store, Reporter(), FakeRunner(maker))  # app:1 is tagged already
    for fields in ({"buildfile_text": BUILDFILE}, {"no_cache": True}, {}):
        command = memo.Command(store.root, (list(fields) or ["plain"])[0].ljust(64, "x"))
        run_build(request(context, memo=command, **fields), store, Reporter(), FakeRunner(maker))
        assert command.path.exists() == (not fields), fields  # the plain build has one


def test_source_date_epoch_as_a_build_arg_or_a_global_arg_dates_the_build(store, context):
    # the reference's BuildKit built-in args: SOURCE_DATE_EPOCH "sets the Unix timestamp for
    # created image and layers"; the option (or the environment) gives it to a stage's ARG too
    run_build(request(context, build_args={"SOURCE_DATE_EPOCH": "10"}), store, Reporter(),
              FakeRunner(maker))
    image = store.load_image(store.resolve("app:1")[1])
    assert image.config.created == "1970-01-01T00:00:10Z"
    (context / "Buildfile").write_text("ARG SOURCE_DATE_EPOCH=20\nFROM scratch\nRUN make-it\n")
    run_build(request(context), store, Reporter(), FakeRunner(maker))
    assert store.load_image(store.resolve("app:1")[1]).config.created == "1970-01-01T00:00:20Z"
    (context / "Buildfile").write_text("FROM scratch\nARG SOURCE_DATE_EPOCH\nRUN make-it\n")
    runner = FakeRunner(maker)
    result = run_build(request(context, source_date_epoch=30), store, Reporter(), runner)
    assert runner.ran[0].env["SOURCE_DATE_EPOCH"] == "30" and result.warnings == ()
    with pytest.raises(BuildfileError, match="invalid SOURCE_DATE_EPOCH 'x'"):
        run_build(request(context, build_args={"SOURCE_DATE_EPOCH": "x"}), store, Reporter(),
                  FakeRunner(maker))
