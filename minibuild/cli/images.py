"""Commands about images: build, history, images, layers, inspect, tag, rmi, parse."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from minibuild.cli import lines
from minibuild.cli.app import cli, container_records, open_store


@cli.command()
@click.option("-f", "--file", "buildfile", type=click.Path(dir_okay=False),
              help="Buildfile (default: CONTEXT/Buildfile, else CONTEXT/Dockerfile; - reads stdin).")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and tag (repeatable): app:1.0.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Set a build-time variable (repeatable).")
@click.option("--target", help="Build up to this stage.")
@click.option("--progress", type=click.Choice(["auto", "plain", "tty"]), default="auto",
              show_default=True, help="Progress output.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest.")
@click.option("--compression", type=click.Choice(["zstd", "gzip", "none"]), default="zstd",
              show_default=True, help="Layer compression (gzip for old clients).")
@click.option("--network", type=click.Choice(["host", "none"]), default="host", show_default=True,
              help="Network of RUN steps.")
@click.option("--no-cache", is_flag=True, help="Run every step; do not reuse cached layers.")
@click.option("--squash", is_flag=True, help="Merge the layers this build adds into one.")
@click.option("--source-date-epoch", type=int, envvar="SOURCE_DATE_EPOCH",
              help="Clamp file times and dates to this Unix time (reproducible builds).")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID[,src=PATH|,env=VAR]",
              help="A secret for RUN --mount=type=secret (repeatable); never stored.")
@click.option("--security-opt", "security_opts", multiple=True,
              metavar="seccomp=unconfined|PROFILE.json|no-new-privileges",
              help="For RUN steps, as docker: another seccomp profile (default: docker's), or "
                   "none; no_new_privs.")
@click.argument("context", type=click.Path(exists=True, file_okay=False), default=".")
@click.pass_context
def build(ctx, buildfile, tags, build_args, target, progress, quiet, compression, network,
          no_cache, squash, source_date_epoch, secrets, security_opts, context) -> None:
    """Build an image from a Buildfile and a context directory."""
    from minibuild.build.pipeline import BuildRequest, run_build
    from minibuild.oci.reference import Reference
    from minibuild.layer.compression import Compression
    from minibuild.sandbox.confinement import parse_security_opts

    request = BuildRequest(
        buildfile=Path(buildfile) if buildfile and buildfile != "-" else _default_buildfile(Path(context)),
        buildfile_text=sys.stdin.read() if buildfile == "-" else None,
        context=Path(context),
        tags=tuple(Reference.parse(t) for t in tags),
        build_args=dict(_key_value(a) for a in build_args),
        target=target,
        compression=Compression.parse(compression),
        network=network,
        source_date_epoch=source_date_epoch,
        no_cache=no_cache,
        squash=squash,
        memo=_memo_command(ctx, quiet),
        secrets=_secrets(secrets),
        security=parse_security_opts(security_opts),
    )
    reporter = _reporter(progress, quiet)
    store = open_store(ctx)
    try:
        result = run_build(request, store, reporter)
    finally:
        close = getattr(reporter, "close", None)
        if close:
            close()
    if quiet:
        click.echo(str(result.digest))
        return
    for line in lines.trailer(str(result.digest), map(str, request.tags), result.warnings):
        click.echo(line, err=True)


def _memo_command(ctx: click.Context, quiet: bool):
    """The build memo key main() was given for this command line, with the flag its replay
    needs; None when this build may not write a memo."""
    command = ctx.find_root().obj.get("memo")
    return command._replace(quiet=quiet) if command is not None else None


def _default_buildfile(context: Path) -> Path:
    for name in ("Buildfile", "Dockerfile"):
        if (context / name).exists():
            return context / name
    return context / "Buildfile"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key:
        raise click.BadParameter(f"{text!r} (want KEY=VALUE)")
    # docker: `--build-arg KEY` takes KEY's value from the environment.
    return key, value if sep else os.environ.get(key, "")


def _secrets(options: tuple[str, ...]) -> dict:
    """--secret options by id (the last one wins); a file secret's file must exist."""
    from minibuild.dockerfile.secretsource import parse_secret_option

    found = {}
    for text in options:
        try:
            source = parse_secret_option(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--secret") from None
        if source.path is not None and not os.path.isfile(source.path):
            raise click.BadParameter(f"secret {source.id}: no such file: {source.path}",
                                     param_hint="--secret")
        found[source.id] = source
    return found


def _reporter(progress: str, quiet: bool):
    from minibuild.cli import render

    if quiet:
        return render.QuietReporter()
    if progress == "tty" or (progress == "auto" and sys.stderr.isatty()):
        return render.RichReporter()
    return render.PlainReporter()


@cli.command()
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.argument("image")
@click.pass_context
def history(ctx, no_trunc, fmt, image) -> None:
    """Show the layers of an image, the instruction that made each, and wasted space."""
    from minibuild.cli import views

    store = open_store(ctx)
    _, descriptor = store.resolve(image)
    rows = views.history_rows(store, store.load_image(descriptor))
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in reversed(rows)], indent=2))
        return
    from minibuild.cli import render

    click.echo(render.history_table(rows, no_trunc=no_trunc), nl=False)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def images(ctx, fmt) -> None:
    """List the images in the store."""
    from minibuild.cli import render, views

    rows = views.image_list(open_store(ctx))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(render.images_table(rows), nl=False)


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def inspect(ctx, images) -> None:
    """Show the manifest digest, manifest and config of images, as JSON."""
    store = open_store(ctx)
    out = []
    for text in images:
        name, descriptor = store.resolve(text)
        manifest = store.read_json(descriptor.digest)
        out.append({"name": name, "digest": str(descriptor.digest),
                    "id": manifest["config"]["digest"], "manifest": manifest,
                    "config": store.read_json(_digest(manifest["config"]["digest"]))})
    click.echo(json.dumps(out, indent=2))


def _digest(text: str):
    from minibuild.oci.digest import Digest

    return Digest.parse(text)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx, source, target) -> None:
    """Give an image another name: tag SOURCE TARGET."""
    from minibuild.oci.reference import Reference

    store = open_store(ctx)
    ref = Reference.parse(target)
    _, descriptor = store.resolve(source)
    store.tag(ref, descriptor)


@cli.command()
@click.option("-f", "--file", "buildfile", type=click.Path(dir_okay=False), default="Buildfile",
              show_default=True)
def parse(buildfile) -> None:
    """Print the parsed instructions of a Buildfile as JSON."""
    from minibuild.cli.dump import dump
    from minibuild.dockerfile import parser

    click.echo(json.dumps(dump(parser.parse_file(buildfile)), indent=2))


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Untag even when a container uses the image.")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx, force, images) -> None:
    """Remove image tags, then the blobs and layers nothing needs any more."""
    from minibuild.maintenance import gc
    from minibuild.errors import StoreError

    store = open_store(ctx)
    gone = []
    for text in images:
        for name in _untag(store, container_records(ctx), text, force):
            click.echo(f"Untagged: {name}")
            gone.append(name)
    try:
        collected = gc.collect(store)
    except StoreError as exc:
        click.echo(f"note: blobs not deleted yet ({exc}); `minibuild prune` frees them later",
                   err=True)
        return
    for digest in collected.blobs:
        click.echo(f"Deleted: {digest}")


def _untag(store, records, text: str, force: bool) -> list[str]:
    """The tags to remove for `rmi TEXT`, after checking no container needs the image."""
    from minibuild.containers.records import ContainerError

    name, descriptor = store.resolve(text)
    same = [n for n, d in store.tags() if d.digest == descriptor.digest]
    names = [name] if name in same else same
    users = records.uses(descriptor.digest)
    if len(names) > 1 and name not in same and not force:
        raise ContainerError(f"image {text} is tagged {len(names)} times: "
                             f"{', '.join(names)}", hint="remove one tag at a time, or use -f")
    if users and not force and len(names) == len(same):
        raise ContainerError(f"unable to remove {text}: container {users[0].short_id} "
                             f"({users[0].name}) is using it",
                             hint="remove the container first, or use `rmi -f` (the container "
                                  "keeps its layers)")
    for n in names:
        store.untag(n)
    return names


@cli.command()
@click.option("--files", is_flag=True, help="List each layer's entries, whiteouts included.")
@click.argument("image")
@click.pass_context
def layers(ctx, files, image) -> None:
    """Each layer of an image, base first, with its sizes; wasted bytes per path."""
    from minibuild.cli import render
    from minibuild.cli.views import history_rows

    store = open_store(ctx)
    loaded = store.load_image(store.resolve(image)[1])
    rows = [r for r in history_rows(store, loaded) if r.layer is not None]
    click.echo(render.layers_table(rows))
    if files:
        for row, layer in zip(rows, loaded.layers):
            click.echo(f"\nlayer {row.layer} {row.diff_id}:")
            for line in render.layer_entries(store.layer_summary(layer), row):
                click.echo("  " + line)
    click.echo(render.layers_waste(rows))
