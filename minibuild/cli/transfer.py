"""Commands that move images in and out: save, load, import, pull, push, login, logout."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from minibuild.cli import cli, open_store


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Archive file (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: an OCI layout tar; docker: what `docker load` and `podman load` read.")
@click.pass_context
def save(ctx, images, output, fmt) -> None:
    """Write images to a tar archive."""
    from minibuild import archive, docker_archive

    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write an archive to a terminal: use -o FILE or a pipe")
    store = open_store(ctx)
    chosen = [store.resolve(text) for text in images]
    writer = docker_archive.save if fmt == "docker" else archive.save_oci
    if output is None:
        writer(store, chosen, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.partial")
    try:
        with open(tmp, "wb") as out:
            writer(store, chosen, out)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"Saved {', '.join(name for name, _ in chosen)} to {output}", err=True)


@cli.command()
@click.option("-i", "--input", "source", type=click.Path(dir_okay=False, exists=True),
              help="Archive file (default: stdin).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def load(ctx, source, quiet) -> None:
    """Load images from an OCI-layout tar or a docker archive (tags kept)."""
    from minibuild import archive

    if source is None and sys.stdin.isatty():
        raise click.UsageError("no archive: use -i FILE or pipe one into stdin")
    store = open_store(ctx)
    if source is None:
        loaded = archive.load(store, sys.stdin.buffer, "stdin")
    else:
        with open(source, "rb") as f:
            loaded = archive.load(store, f, source)
    if quiet:
        return
    for item in loaded:
        for tag in item.tags:
            click.echo(f"Loaded image: {tag}")
        if not item.tags:
            click.echo(f"Loaded image: {item.descriptor.digest}")


@cli.command(name="import")
@click.argument("tarball", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("reference")
@click.option("-c", "--change", "changes", multiple=True,
              help="A Buildfile instruction for the config, e.g. 'CMD [\"sh\"]' (repeatable).")
@click.pass_context
def import_(ctx, tarball, reference, changes) -> None:
    """Make a one-layer image from a rootfs tarball (tar, .gz, .xz, .zst; - for stdin)."""
    from minibuild.importer import import_rootfs
    from minibuild.reference import Reference

    ref = Reference.parse(reference)
    store = open_store(ctx)
    if tarball == "-":
        desc = import_rootfs(store, sys.stdin.buffer, "stdin", ref, tuple(changes))
    else:
        try:
            source = open(tarball, "rb")
        except OSError as exc:
            raise click.BadParameter(f"cannot open {tarball}: {exc.strerror}") from None
        with source:
            desc = import_rootfs(store, source, Path(tarball).name, ref, tuple(changes))
    click.echo(str(desc.digest))
