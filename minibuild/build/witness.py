"""The build memo's side of a real build: what it must know of the build to write the memo.

The pipeline makes one `Witness` per build, before anything is resolved, and uses four things of it: `sightings` (for the
build context), `reporter()` and `cache()` (wrappers that note the step lines and the step cache
keys used), and `finish()` once the image is stored and tagged. A build that may not have a memo
(no memo command, `--no-cache`, a Buildfile from stdin, /dev or /proc, `--secret`) gets an
idle witness: it wraps nothing, watches nothing and writes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from minibuild.build import fsstate, memo
from minibuild.build.sightings import Sightings
from minibuild.dockerfile.parser import DEFAULT_NAMES
from minibuild.oci.digest import Digest

if TYPE_CHECKING:
    from minibuild.build.cache import Cache, CacheEntry
    from minibuild.build.ports import Reporter, StepCache
    from minibuild.oci.image import Descriptor, Image
    from minibuild.oci.reference import Reference


class WatchedRequest(Protocol):
    """What the witness reads of a build request (pipeline.BuildRequest)."""

    memo: memo.Command | None
    buildfile: Path
    buildfile_text: str | None
    context: Path
    no_cache: bool
    secrets: Mapping[str, object]
    tags: tuple[Reference, ...]


class StepLog:
    """A reporter that passes everything on and keeps the step lines (for the memo's replay)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.steps: list[memo.Step] = []
        self._open: tuple[int, int, str, str] | None = None

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts: keep its header until it is done."""
        self._open = (number, total, stage, text)
        self.reporter.step(number, total, stage, text)

    def output(self, data: bytes) -> None:
        """Output of the running step (not kept: a replay shows cached steps only)."""
        self.reporter.output(data)

    def phase(self, text: str) -> None:
        """A phase inside a step."""
        self.reporter.phase(text)

    def done(self, seconds: float, note: str) -> None:
        """The step ended: a note means a filesystem step (its replay says CACHED)."""
        if self._open is not None:
            self.steps.append(memo.Step(*self._open, cached=bool(note)))
            self._open = None
        self.reporter.done(seconds, note)


class CacheLog:
    """The engine's step cache, noting the entry files the build used: a real build without
    them would run those steps again, so the memo checks they are still there."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.used: list[str] = []

    def get(self, key: str) -> CacheEntry | None:
        """The cache's entry; a hit is noted."""
        entry = self.cache.get(key)
        if entry is not None:
            self.used.append(str(self.cache.entry_path(key)))
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        """Record a step's result, and note it."""
        self.cache.put(key, entry)
        self.used.append(str(self.cache.entry_path(key)))

    def get_copy(self, shape: str) -> Path | None:
        """A COPY reuse hint (a hint only: not an input of the memo)."""
        return self.cache.get_copy(shape)

    def put_copy(self, shape: str, diff_id: Digest) -> None:
        """Remember a COPY reuse hint."""
        self.cache.put_copy(shape, diff_id)


def _memo_allowed(request: WatchedRequest) -> bool:
    """False for a build whose inputs the memo could not check: a Buildfile from stdin, /dev
    or /proc, a secret's file or variable; and for --no-cache."""
    buildfile = os.path.realpath(request.buildfile)
    return not (request.buildfile_text is not None or request.no_cache or request.secrets
                or buildfile.startswith(("/dev/", "/proc/")))


class Witness:
    """What the build memo must know of one build: gathered before anything is resolved,
    completed while the build runs, written by `finish`."""

    def __init__(self, request: WatchedRequest, store_root: Path) -> None:
        self.command = request.memo if _memo_allowed(request) else None
        self.sightings: Sightings | None = None  # for the BuildContext; None: nobody watches
        self._log: StepLog | None = None
        self._cache: CacheLog | None = None
        if self.command is None:
            return
        self._request = request
        self._started_ns = time.time_ns()
        self._index_before = memo.index_hash(store_root)
        self._trails: dict[str, list | None] = {}
        context = Path(request.context)
        for path in (context, request.buildfile, *(context / name for name in DEFAULT_NAMES)):
            for name in fsstate.trail(str(path)):
                self._trails.setdefault(name, fsstate.identity(name))
        buildfile = os.path.realpath(request.buildfile)
        self._buildfile = {os.path.abspath(request.buildfile), buildfile}
        self.sightings = Sightings()

    def reporter(self, reporter: Reporter) -> Reporter:
        """The reporter to give the engine (noting step lines when the memo is on)."""
        if self.command is None:
            return reporter
        self._log = StepLog(reporter)
        return self._log

    def cache(self, cache: Cache) -> StepCache:
        """The step cache to give the engine (noting the keys used when the memo is on)."""
        if self.command is None:
            return cache
        self._cache = CacheLog(cache)
        return self._cache

    def finish(self, *, context_root: Path, image: Image, manifest: Descriptor,
               images_used: Iterable[Descriptor], warnings: tuple[str, ...]) -> bool:
        """Write the memo of the finished build; False when there is none (see memo.record)."""
        if self.command is None or self.sightings.remote:
            return False
        blobs = [str(manifest.digest), str(Digest.of(image.config_bytes())),
                 *(str(layer.descriptor.digest) for layer in image.layers),
                 *(str(d.digest) for d in images_used)]
        trails = {**self._trails, **self.sightings.trails()}
        for entry in self._cache.used if self._cache is not None else ():
            trails[entry] = fsstate.identity(entry)
        tags = self._request.tags
        return memo.record(
            self.command, started_ns=self._started_ns, index_before=self._index_before,
            inputs=self.sightings.inputs(context_root) | self._buildfile, trails=trails,
            blobs=blobs, steps=self._log.steps if self._log is not None else (),
            digest=str(manifest.digest), image_id=str(Digest.of(image.config_bytes())), tags=[ref.ref_name for ref in tags],
            shown_tags=[str(ref) for ref in tags], warnings=warnings)
