"""`minibuild build` end to end: parse, plan, run the engine, store the image, tag it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.build import parsecache
from minibuild.build.memo import Command as MemoCommand
from minibuild.sandbox import sandbox
from minibuild.sandbox.confinement import SecurityOptions
from minibuild.sandbox.limits import Limits
from minibuild.build.cache import Cache
from minibuild.build.context import BuildContext
from minibuild.oci.digest import Digest
from minibuild.build.engine import BuildOptions, Engine
from minibuild.build.ports import Reporter, Runner
from minibuild.build.witness import Witness
from minibuild.errors import BuildfileError
from minibuild.dockerfile import buildargs
from minibuild.dockerfile.plan import make_plan
from minibuild.oci.reference import Reference
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.layer import layerpath
from minibuild.layer.compression import Compression


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
    memo: MemoCommand | None = None  # the command line, to write its build memo
    secrets: dict[str, SecretSource] = field(default_factory=dict)  # --secret, by id
    security: SecurityOptions = SecurityOptions()  # --security-opt: RUN steps' seccomp, NNP
    allow: frozenset[str] = frozenset()  # entitlements, as BuildKit's --allow
    limits: Limits = Limits()  # --memory, --pids-limit, --cpus of every RUN step


@dataclass(frozen=True)
class BuildResult:
    """The stored image: its manifest digest, its ID (config digest), warnings for the user."""

    digest: Digest
    warnings: tuple[str, ...] = ()
    image_id: Digest | None = None


def _stat_cache_path(store, context: Path) -> Path:
    """Where the stat cache of one context dir lives: hashes survive across builds, so an
    unchanged 20,000-file COPY is not read again (a file's stat must match in full)."""
    path = store.paths.stat_cache / f"{Digest.of(str(context).encode()).hex[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _load_stat_cache(context: BuildContext, path: Path) -> None:
    try:
        context.hashes.load(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError):
        pass  # no cache yet, or a damaged one: hash everything


def run_build(request: BuildRequest, store, reporter: Reporter,
              runner: Runner | None = None) -> BuildResult:
    """Build and store the image; tags are written only once every step succeeded.

    The steps run in the sandbox unless a `runner` is given (unit tests pass a fake)."""
    witness = Witness(request, store.root)
    # The parse cache serves --no-cache too: it is keyed on the text and the parser's code, so
    # it holds exactly what parsing gives; --no-cache is about steps, whose results can go stale.
    if request.buildfile_text is not None:
        buildfile = parsecache.parse(store.root, request.buildfile_text, "Buildfile (stdin)")
    elif not request.buildfile.is_file():
        raise BuildfileError(f"no such Buildfile: {request.buildfile}", file=str(request.buildfile))
    else:
        buildfile = parsecache.parse_file(store.root, request.buildfile)
    build_args = buildargs.with_epoch(request.build_args, request.source_date_epoch)
    plan = make_plan(buildfile, build_args, request.target)
    epoch = buildargs.source_date_epoch(build_args, plan.global_values(), buildfile.file)
    if runner is None:
        sandbox.check_support()
        runner = sandbox.Sandbox(image_lookup=layerpath.resolve, security=request.security,
                                 limits=request.limits.with_default_pids())
    options = BuildOptions(build_args=build_args, compression=request.compression,
                           network=request.network, source_date_epoch=epoch,
                           no_cache=request.no_cache, squash=request.squash,
                           secrets=request.secrets,
                           allow_insecure="security.insecure" in request.allow)
    beside = None if request.buildfile_text is not None else request.buildfile  # its .dockerignore
    context = BuildContext(request.context.resolve(), sightings=witness.sightings, buildfile=beside)
    stat_cache = _stat_cache_path(store, context.root)
    _load_stat_cache(context, stat_cache)
    engine = Engine(store, runner, context, witness.reporter(reporter), options,
                    cache=witness.cache(Cache(store)))
    image = engine.build(plan)
    store.write_file_atomic(stat_cache, json.dumps(context.hashes.to_json()).encode(), durable=False)
    descriptor = store.write_image(image)
    for ref in request.tags:
        store.tag(ref, descriptor)
    if not request.tags:
        store.add_image(descriptor)  # untagged, it stays (as docker's <none>) until rmi or prune
    unused = engine.unused_build_args(plan)
    warnings = (f"build args not consumed by any ARG: {', '.join(unused)}",) if unused else ()
    witness.finish(context_root=context.root, image=image, manifest=descriptor,
                   images_used=engine.images_used, warnings=warnings)
    return BuildResult(descriptor.digest, warnings, Digest.of(image.config_bytes()))
