"""`minibuild build` end to end: parse, plan, run the engine, store the image, tag it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from minibuild import parser, sandbox
from minibuild.context import BuildContext
from minibuild.digest import Digest
from minibuild.engine import BuildOptions, Engine
from minibuild.errors import BuildfileError
from minibuild.plan import make_plan
from minibuild.reference import Reference
from minibuild.snapshot import Compression


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


@dataclass(frozen=True)
class BuildResult:
    """The stored image: its manifest digest, and warnings for the user."""

    digest: Digest
    warnings: tuple[str, ...] = ()


def run_build(request: BuildRequest, store, reporter) -> BuildResult:
    """Build and store the image; tags are written only once every step succeeded."""
    if not request.buildfile.is_file():
        raise BuildfileError(f"no such Buildfile: {request.buildfile}", file=str(request.buildfile))
    buildfile = parser.parse_file(request.buildfile)
    plan = make_plan(buildfile, request.build_args, request.target)
    sandbox.check_support()
    options = BuildOptions(build_args=request.build_args, compression=request.compression,
                           network=request.network, source_date_epoch=request.source_date_epoch,
                           no_cache=request.no_cache, squash=request.squash)
    engine = Engine(store, sandbox.Sandbox(), BuildContext(request.context.resolve()), reporter, options)
    image = engine.build(plan)
    descriptor = store.write_image(image)
    for ref in request.tags:
        store.tag(ref, descriptor)
    unused = engine.unused_build_args(plan)
    warnings = (f"build args not consumed by any ARG: {', '.join(unused)}",) if unused else ()
    return BuildResult(descriptor.digest, warnings)
