"""`minibuild build` end to end: parse, plan, run the engine, store the image, tag it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.build import fsstate, memo, parsecache
from minibuild.sandbox import sandbox
from minibuild.build.cache import Cache
from minibuild.build.context import BuildContext
from minibuild.oci.digest import Digest
from minibuild.build.engine import BuildOptions, Engine
from minibuild.errors import BuildfileError
from minibuild.dockerfile.plan import make_plan
from minibuild.oci.reference import Reference
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.layer.snapshot import Compression


@dataclass(frozen=True)
class BuildRequest:
    """Everything `build` was asked to do."""

    buildfile: Path
    context: Path
    tags: tuple[Reference, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    compression: Compression = Compression.ZSTD
    network: str = "host"
    source_date_epoch: int | None = None
    no_cache: bool = False
    squash: bool = False
    buildfile_text: str | None = None  # `-f -`: the Buildfile came on stdin
    memo: memo.Command | None = None  # the command line, to write its build memo
    secrets: dict[str, SecretSource] = field(default_factory=dict)  # --secret, by id


@dataclass(frozen=True)
class BuildResult:
    """The stored image: its manifest digest, and warnings for the user."""

    digest: Digest
    warnings: tuple[str, ...] = ()


def _stat_cache_path(store, context: Path) -> Path:
    """Where the stat cache of one context dir lives: hashes survive across builds, so an
    unchanged 20,000-file COPY is not read again (a file's stat must match in full)."""
    path = store.paths.stat_cache / f"{Digest.of(str(context).encode()).hex[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _load_stat_cache(context: BuildContext, path: Path) -> None:
    try:
        context.use_stat_cache(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError):
        pass  # no cache yet, or a damaged one: hash everything


class _StepLog:
    """A reporter that passes everything on and keeps the step lines (for the build memo)."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.steps: list[memo.Step] = []
        self._open: tuple[int, int, str, str] | None = None

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        self._open = (number, total, stage, text)
        self.reporter.step(number, total, stage, text)

    def output(self, data: bytes) -> None:
        self.reporter.output(data)

    def phase(self, text: str) -> None:
        self.reporter.phase(text)

    def done(self, seconds: float, note: str) -> None:
        if self._open is not None:
            self.steps.append(memo.Step(*self._open, cached=bool(note)))
            self._open = None
        self.reporter.done(seconds, note)


class _CacheLog:
    """The engine's step cache, noting the keys the build used (the memo checks their entries)."""

    def __init__(self, cache) -> None:
        self.cache = cache
        self.keys: list[str] = []

    def get(self, key: str):
        entry = self.cache.get(key)
        if entry is not None:
            self.keys.append(key)
        return entry

    def put(self, key: str, entry) -> None:
        self.cache.put(key, entry)
        self.keys.append(key)

    def __getattr__(self, name: str):
        return getattr(self.cache, name)


class _Witness:
    """What the build memo must know of this build: gathered before anything is resolved."""

    def __init__(self, request: BuildRequest, store) -> None:
        self.command = request.memo
        buildfile = os.path.realpath(request.buildfile)
        # With --secret no memo: a secret's file or variable is not an input the memo could check.
        if request.buildfile_text is not None or request.no_cache or request.secrets \
                or buildfile.startswith(("/dev/", "/proc/")):
            self.command = None
        if self.command is None:
            return
        self.started_ns = time.time_ns()
        self.index_before = memo.index_hash(store.root)
        self.trails: dict[str, list | None] = {}
        context = Path(request.context)
        for path in (context, request.buildfile, context / "Buildfile", context / "Dockerfile"):
            for name in fsstate.trail(str(path)):
                self.trails.setdefault(name, fsstate.identity(name))
        self.buildfile = {os.path.abspath(request.buildfile), buildfile}

    def record(self, *, context: BuildContext, engine: Engine, cache: _CacheLog, image, descriptor,
               log: _StepLog, request: BuildRequest, warnings: tuple[str, ...]) -> None:
        if self.command is None:
            return
        blobs = [str(descriptor.digest), str(Digest.of(image.config_bytes())),
                 *(str(layer.descriptor.digest) for layer in image.layers),
                 *(str(d.digest) for d in engine.images_used)]
        trails = {**self.trails, **context.trails()}
        for key in cache.keys:
            entry = str(cache.dir / f"{key}.json")
            trails[entry] = fsstate.identity(entry)
        memo.record(self.command, started_ns=self.started_ns, index_before=self.index_before,
                    inputs=context.inputs() | self.buildfile, trails=trails, blobs=blobs,
                    steps=log.steps, digest=str(descriptor.digest),
                    tags=[ref.ref_name for ref in request.tags],
                    shown_tags=[str(ref) for ref in request.tags], warnings=warnings)


def run_build(request: BuildRequest, store, reporter) -> BuildResult:
    """Build and store the image; tags are written only once every step succeeded."""
    witness = _Witness(request, store)
    log = reporter = _StepLog(reporter)
    # The parse cache serves --no-cache too: it is keyed on the text and the parser's code, so
    # it holds exactly what parsing gives; --no-cache is about steps, whose results can go stale.
    if request.buildfile_text is not None:
        buildfile = parsecache.parse(store.root, request.buildfile_text, "Buildfile (stdin)")
    elif not request.buildfile.is_file():
        raise BuildfileError(f"no such Buildfile: {request.buildfile}", file=str(request.buildfile))
    else:
        buildfile = parsecache.parse_file(store.root, request.buildfile)
    plan = make_plan(buildfile, request.build_args, request.target)
    sandbox.check_support()
    options = BuildOptions(build_args=request.build_args, compression=request.compression,
                           network=request.network, source_date_epoch=request.source_date_epoch,
                           no_cache=request.no_cache, squash=request.squash,
                           secrets=request.secrets)
    context = BuildContext(request.context.resolve())
    stat_cache = _stat_cache_path(store, context.root)
    _load_stat_cache(context, stat_cache)
    cache = _CacheLog(Cache(store))
    engine = Engine(store, sandbox.Sandbox(), context, reporter, options, cache=cache)
    image = engine.build(plan)
    store.write_file_atomic(stat_cache, json.dumps(context.stat_cache()).encode(), durable=False)
    descriptor = store.write_image(image)
    for ref in request.tags:
        store.tag(ref, descriptor)
    unused = engine.unused_build_args(plan)
    warnings = (f"build args not consumed by any ARG: {', '.join(unused)}",) if unused else ()
    witness.record(context=context, engine=engine, cache=cache, image=image, descriptor=descriptor,
                   log=log, request=request, warnings=warnings)
    return BuildResult(descriptor.digest, warnings)
