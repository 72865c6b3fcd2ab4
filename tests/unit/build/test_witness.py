"""The build memo's side of a build (witness.py, sightings.py), with a fake reporter and cache:
what an idle witness leaves alone, what an active one notes, and the memo it writes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.build import memo
from minibuild.build.cache import CacheEntry
from minibuild.build.context import BuildContext
from minibuild.build.sightings import Sightings
from minibuild.build.witness import Witness
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image
from minibuild.oci.reference import Reference


@dataclass
class Request:
    """The fields of a BuildRequest the witness reads."""

    buildfile: Path
    context: Path
    memo: memo.Command | None = None
    buildfile_text: str | None = None
    no_cache: bool = False
    secrets: dict = field(default_factory=dict)
    tags: tuple = ()


class Reporter:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def step(self, *args) -> None:
        self.calls.append(("step", *args))

    def output(self, data: bytes) -> None:
        self.calls.append(("output", data))

    def phase(self, text: str) -> None:
        self.calls.append(("phase", text))

    def done(self, seconds: float, note: str) -> None:
        self.calls.append(("done", note))


class FakeCache:
    """A dict behind the StepCache methods, with the real cache's entry_path."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.entries, self.copies = directory, {}, {}

    def entry_path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, entry) -> None:
        self.entries[key] = entry
        self.entry_path(key).write_text("{}")

    def get_copy(self, shape):
        return self.copies.get(shape)

    def put_copy(self, shape, diff_id) -> None:
        self.copies[shape] = diff_id


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A store with an empty index, a context with a Buildfile, both settled."""
    root = tmp_path / "store"
    (root / "oci").mkdir(parents=True)
    (root / "oci" / "index.json").write_text(json.dumps({"manifests": []}))
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Buildfile").write_text("FROM scratch\n")
    (context / "a.txt").write_text("a")
    for path in (context / "Buildfile", context / "a.txt", context):
        os.utime(path, ns=(1, 1))
    return root, context


def test_an_idle_witness_wraps_and_watches_nothing(tmp_path):
    root, context = project(tmp_path)
    command = memo.Command(root, "k" * 64)
    cache, reporter = FakeCache(tmp_path), Reporter()
    for request in (Request(context / "Buildfile", context),  # no memo command
                    Request(context / "Buildfile", context, command, no_cache=True),
                    Request(context / "Buildfile", context, command, buildfile_text="FROM x"),
                    Request(context / "Buildfile", context, command, secrets={"id": object()}),
                    Request(Path("/dev/stdin"), context, command)):
        witness = Witness(request, root)
        assert witness.command is None and witness.sightings is None
        assert witness.reporter(reporter) is reporter and witness.cache(cache) is cache
        assert not witness.finish(context_root=context, image=Image(), manifest=None,
                                  images_used=(), warnings=())
    assert not memo.memo_dir(root).exists()


def test_an_active_witness_notes_steps_and_cache_entries(tmp_path):
    root, context = project(tmp_path)
    witness = Witness(Request(context / "Buildfile", context, memo.Command(root, "k" * 64)), root)
    inner, cache_dir = Reporter(), tmp_path / "steps"
    cache_dir.mkdir()
    reporter, cache = witness.reporter(inner), witness.cache(FakeCache(cache_dir))
    reporter.step(1, 2, "stage-0", "FROM scratch")
    reporter.done(0.1, "")
    reporter.step(2, 2, "stage-0", "RUN x")
    reporter.output(b"hi\n")
    reporter.phase("snapshot")
    reporter.done(0.2, "1 B in layer abc")
    assert [c[0] for c in inner.calls] == ["step", "done", "step", "output", "phase", "done"]
    assert witness._log.steps == [memo.Step(1, 2, "stage-0", "FROM scratch", False),
                                  memo.Step(2, 2, "stage-0", "RUN x", True)]
    entry = CacheEntry(None, History(created_by="x"))
    assert cache.get("miss") is None
    cache.put("k1", entry)
    assert cache.get("k1") == entry
    cache.put_copy("shape", Digest.of(b"x"))
    assert cache.get_copy("shape") == Digest.of(b"x")
    assert witness._cache.used == [str(cache_dir / "k1.json")] * 2  # a miss is no input


def test_the_context_notes_what_it_reads_only_when_watched(tmp_path):
    _, context = project(tmp_path)
    sightings = Sightings()
    BuildContext(context, sightings=sightings).select_sources(["a.txt"])
    assert str(context / "a.txt") in sightings.paths
    assert str(context / ".dockerignore") in sightings.paths  # read (absent) at the start
    assert str(context / "a.txt") in sightings.trails()
    assert sightings.inputs(context) >= {str(context), str(context / "a.txt")}
    image = Sightings()
    BuildContext(context, image=True, sightings=image).select_sources(["a.txt"])
    assert not image.paths and not image.trails()  # an image's content is addressed by digest
    beside = Sightings()  # the Buildfile's own ignore file is an input too, present or not
    BuildContext(context, sightings=beside, buildfile=context / "Dockerfile")
    assert {str(context / "Dockerfile.dockerignore"), str(context / ".dockerignore")} <= beside.paths


def test_inputs_include_the_dirs_between_a_path_and_the_root(tmp_path):
    sightings = Sightings()
    sightings.look(str(tmp_path / "a" / "b" / "c.txt"))
    sightings.look("/elsewhere/x")
    assert sightings.inputs(tmp_path) == {str(tmp_path), str(tmp_path / "a"),
                                          str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "c.txt"),
                                          "/elsewhere/x"}


def test_finish_writes_a_memo_that_answers_until_the_context_changes(tmp_path):
    root, context = project(tmp_path)
    config = Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(Image().config_bytes()), 2)
    manifest = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"manifest"), 8)
    blobs = root / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for d in (config.digest, manifest.digest):
        (blobs / d.hex).write_text("{}")
    index = {"manifests": [{"digest": str(manifest.digest),
                            "annotations": {"org.opencontainers.image.ref.name": "app:1"}}]}
    time.sleep(0.15)  # the ctimes set by project() leave the racy window
    command = memo.Command(root, "k" * 64)
    request = Request(context / "Buildfile", context, command, tags=(Reference.parse("app:1"),))
    witness = Witness(request, root)
    witness.reporter(Reporter()).step(1, 1, "stage-0", "FROM scratch")
    BuildContext(context, sightings=witness.sightings).select_sources(["a.txt"])
    (root / "oci" / "index.json").write_text(json.dumps(index))  # the build tags its result
    assert not witness.finish(context_root=context, image=Image(), manifest=manifest,
                              images_used=(), warnings=())  # index moved since the start
    witness = Witness(request, root)
    log = witness.reporter(Reporter())
    log.step(1, 1, "stage-0", "FROM scratch")
    log.done(0.0, "")
    BuildContext(context, sightings=witness.sightings).select_sources(["a.txt"])
    assert witness.finish(context_root=context, image=Image(), manifest=manifest,
                          images_used=(), warnings=("w",))
    (root / "locks").mkdir()
    (root / "locks" / "gc").touch()
    replay = memo.lookup(command)
    assert replay is not None and replay.digest == str(manifest.digest)
    assert replay.tags == ("app:1",) and replay.warnings == ("w",)
    assert replay.steps == (memo.Step(1, 1, "stage-0", "FROM scratch", False),)
    (context / "a.txt").write_text("b")
    assert memo.lookup(command) is None
