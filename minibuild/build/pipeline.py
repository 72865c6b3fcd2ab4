"""`minibuild build` end to end: parse, plan, run the engine, store the image, tag it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.build import parsecache
from minibuild.build.memo import Command as MemoCommand
from minibuild.sandbox import idranges, sandbox
from minibuild.sandbox.confinement import SecurityOptions
from minibuild.sandbox.limits import Limits
from minibuild.sandbox.network import Networks
from minibuild.build.cache import Cache
from minibuild.build.context import BuildContext
from minibuild.oci.digest import Digest
from minibuild.build.remotecache import RemoteCache
from minibuild.build.engine import BuildOptions, Engine
from minibuild.build.ports import Reporter, Runner
from minibuild.build.witness import Witness
from minibuild.errors import ImageNotFound, BuildfileError
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
    compression: Compression = Compression.GZIP
    network: str = "default"  # of RUN steps: default (private, slirp4netns), host or none
    source_date_epoch: int | None = None
    no_cache: bool = False
    squash: bool = False
    buildfile_text: str | None = None  # `-f -`: the Buildfile came on stdin
    memo: MemoCommand | None = None  # the command line, to write its build memo
    secrets: dict[str, SecretSource] = field(default_factory=dict)  # --secret, by id
    security: SecurityOptions = SecurityOptions()  # --security-opt: RUN steps' seccomp, NNP
    allow: frozenset[str] = frozenset()  # entitlements, as BuildKit's --allow: network.host,
                                         # security.insecure
    pull: str = "missing"  # --pull: missing, always or never
    labels: dict[str, str] = field(default_factory=dict)  # --label: set on the final image
    registries_conf: str | None = None  # --registries-conf: mirrors, search registries
    cache_from: tuple[str, ...] = ()  # --cache-from type=registry,ref=HOST/REPO (in order)
    cache_to: str | None = None  # --cache-to type=registry,ref=HOST/REPO[,mode=min|max]
    limits: Limits = Limits()  # --memory, --pids-limit, --cpus of every RUN step
    userns: str = "host"  # --userns: host (steps run as host root) or auto (a range of ids)


@dataclass(frozen=True)
class BuildResult:
    """The stored image: its manifest digest, its ID (config digest), warnings for the user."""

    digest: Digest
    warnings: tuple[str, ...] = ()
    image_id: Digest | None = None
    cache_note: str | None = None  # what --cache-from / --cache-to did


def _labelled(image, labels: dict[str, str]):
    """docker's `build --label`: labels set on the final image's config (no history entry)."""
    config = image.config.config
    for key, value in labels.items():
        config = config.with_label(key, value)
    return image.with_container_config(config) if labels else image


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


def _puller(store, registries_conf: str | None, *, always: bool = False):
    """What fetches a FROM / COPY --from image the store lacks: transfer's pull, imported (with
    httpx) and configured only when a build needs it; its RegistryError becomes ImageNotFound."""
    def pull(text: str):
        from minibuild.transfer import registryconf
        from minibuild.transfer.registry import RegistryError
        from minibuild.transfer.remote import pull, pull_if_missing

        fetch = pull if always else pull_if_missing
        try:
            return fetch(store, text, registries=registryconf.load(registries_conf))
        except RegistryError as exc:
            raise ImageNotFound(exc.message, hint=exc.hint) from None
    return pull


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
    networks = Networks()  # one private network for the whole build, made on first use
    userns = None
    if runner is None:
        sandbox.check_support()
        userns = idranges.for_mode(request.userns)  # one user namespace for the whole build
        runner = sandbox.Sandbox(image_lookup=layerpath.resolve, security=request.security,
                                 networks=networks, limits=request.limits.with_default_pids(),
                                 userns=userns)
    try:
        return _build(request, store, reporter, runner, witness, plan, epoch, build_args,
                      networks)
    finally:
        if userns is not None:
            userns.close()


def _build(request: BuildRequest, store, reporter: Reporter, runner: Runner, witness: Witness,
           plan, epoch: int | None, build_args: dict[str, str], networks: Networks) -> BuildResult:
    """run_build once the runner is there."""
    options = BuildOptions(build_args=build_args, compression=request.compression,
                           network=request.network, source_date_epoch=epoch,
                           allow_host_network="network.host" in request.allow,
                           no_cache=request.no_cache, squash=request.squash,
                           secrets=request.secrets, pull=request.pull,
                           allow_insecure="security.insecure" in request.allow)
    beside = None if request.buildfile_text is not None else request.buildfile  # its .dockerignore
    context = BuildContext(request.context.resolve(), sightings=witness.sightings, buildfile=beside)
    stat_cache = _stat_cache_path(store, context.root)
    _load_stat_cache(context, stat_cache)
    registry_cache = _registry_cache(store, request)
    cache = witness.cache(Cache(store))
    if registry_cache is not None:
        cache = RemoteCache(cache, registry_cache if request.cache_from else None)
    engine = Engine(store, runner, context, witness.reporter(reporter), options, cache=cache,
                    puller=_puller(store, request.registries_conf, always=request.pull == "always"))
    try:
        with networks:
            image = _labelled(engine.build(plan), request.labels)
        note = _export(registry_cache, cache, image) if registry_cache is not None else None
    finally:
        if registry_cache is not None:
            registry_cache.close()
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
    return BuildResult(descriptor.digest, warnings, Digest.of(image.config_bytes()), note)


def _registry_cache(store, request: BuildRequest):
    """The registry cache the request names (transfer, and httpx, imported only then)."""
    if not request.cache_from and request.cache_to is None:
        return None
    from minibuild.transfer import registryconf
    from minibuild.transfer.registrycache import CacheSpec, RegistryCache

    return RegistryCache(store, tuple(CacheSpec.parse(t) for t in request.cache_from),
                         CacheSpec.parse(request.cache_to) if request.cache_to else None,
                         registryconf.load(request.registries_conf))


def _export(registry_cache, cache: RemoteCache, image) -> str:
    """Export the build's steps when --cache-to asks; a line saying what moved."""
    parts = [f"{len(cache.imported)} steps imported"] if registry_cache.sources else []
    if registry_cache.target is not None:
        added, present = registry_cache.export(cache.exportable(image, registry_cache.target.mode))
        parts.append(f"{added} keys exported to {registry_cache.target.repository} "
                     f"({present} already there)")
    return "cache: " + ", ".join(parts)
