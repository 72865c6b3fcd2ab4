"""Commands that move images in and out: save, load, import, pull, push, login, logout."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from minibuild.cli.app import cli, open_store, registries


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Archive file (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: an OCI layout tar; docker: what `docker load` and `podman load` read.")
@click.option("--compression", type=click.Choice(["gzip", "none"]), default=None,
              help="Layers of a docker archive [default: gzip]; an OCI archive keeps the stored blobs.")
@click.pass_context
def save(ctx, images, output, fmt, compression) -> None:
    """Write images to a tar archive."""
    from functools import partial

    from minibuild.layer.compression import Compression
    from minibuild.transfer import docker_archive, oci_archive

    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write an archive to a terminal: use -o FILE or a pipe")
    if compression is not None and fmt != "docker":
        raise click.UsageError("--compression applies to --format docker (an OCI archive keeps the stored blobs)")
    store = open_store(ctx)
    chosen = [_saved_name(store, text) for text in images]
    writer = oci_archive.save
    if fmt == "docker":
        writer = partial(docker_archive.save, layer_compression=Compression.parse(compression or "gzip"))
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
    click.echo(f"Saved {', '.join(name or str(d.digest) for name, d in chosen)} to {output}",
               err=True)


def _saved_name(store, text: str):
    """(the tag to write, or None for an image named by ID or digest; its manifest)."""
    found = store.find(text)
    return found.tag, found.descriptor


@cli.command()
@click.option("-i", "--input", "source", type=click.Path(dir_okay=False, exists=True),
              help="Archive file (default: stdin).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def load(ctx, source, quiet) -> None:
    """Load images from an OCI-layout tar or a docker archive (tags kept)."""
    from minibuild.transfer import archive

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
        for tag, old in item.replaced:  # docker's words for a tag that moved
            click.echo(f"The image {tag} already exists, renaming the old one with ID "
                       f"{store.image_id(old)} to empty string")
        for tag in item.tags:
            click.echo(f"Loaded image: {tag}")
        if not item.tags:
            click.echo(f"Loaded image ID: {store.image_id(item.descriptor)}")


@cli.command(name="import")
@click.argument("tarball", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("reference")
@click.option("-c", "--change", "changes", multiple=True,
              help="A Buildfile instruction for the config, e.g. 'CMD [\"sh\"]' (repeatable).")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True, help="Layer compression (a tarball already in it is kept as it is).")
@click.pass_context
def import_(ctx, tarball, reference, changes, compression) -> None:
    """Make a one-layer image from a rootfs tarball (tar, .gz, .xz, .zst; - for stdin)."""
    from minibuild.layer.compression import Compression
    from minibuild.transfer.importer import import_rootfs
    from minibuild.oci.reference import Reference

    ref = Reference.parse(reference)
    wanted = Compression.parse(compression)
    store = open_store(ctx)
    if tarball == "-":
        desc = import_rootfs(store, sys.stdin.buffer, "stdin", ref, tuple(changes), wanted)
    else:
        try:
            source = open(tarball, "rb")
        except OSError as exc:
            raise click.BadParameter(f"cannot open {tarball}: {exc.strerror}") from None
        with source:
            desc = import_rootfs(store, source, Path(tarball).name, ref, tuple(changes), wanted)
    click.echo(str(store.image_id(desc)))  # docker's `import`: the image ID


class _Bars:
    """One progress bar per blob on a terminal; one line per finished blob otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.rich = None
        self.tasks: dict[str, int] = {}
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TextColumn("{task.fields[note]}"), console=Console(stderr=True))
            self.rich.start()

    def begin(self, key: str, label: str, total: int) -> None:
        """A blob starts moving."""
        if self.rich is not None and key not in self.tasks:
            self.tasks[key] = self.rich.add_task(label, total=total, note="")

    def advance(self, key: str, amount: int) -> None:
        """Bytes moved."""
        if self.rich is not None and key in self.tasks:
            self.rich.advance(self.tasks[key], amount)

    def end(self, key: str, note: str) -> None:
        """A blob is done."""
        if self.quiet:
            return
        if self.rich is None:
            click.echo(f"{key}: {note}", err=True)
        elif key in self.tasks:
            self.rich.update(self.tasks[key], note=note)
        else:
            self.rich.add_task(f"{key} ", total=1, completed=1, note=note)

    def close(self) -> None:
        """Stop drawing."""
        if self.rich is not None:
            self.rich.stop()


@cli.command()
@click.argument("reference")
@click.option("--insecure", is_flag=True, help="Plain http (always used for localhost/127.0.0.1; "
              "per registry in registries.conf).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest digest.")
@click.pass_context
def pull(ctx, reference, insecure, quiet) -> None:
    """Pull [HOST[:PORT]/]REPO[:TAG|@DIGEST] (only missing layers; mirrors first; a short name
    from docker.io or the search registries of registries.conf)."""
    from minibuild.transfer import remote as transfer

    config = registries(ctx)
    store = open_store(ctx)
    bars = _Bars(quiet)
    try:
        desc = transfer.pull(store, reference, insecure=insecure, progress=bars, registries=config)
    finally:
        bars.close()
    if not quiet:
        click.echo(f"Pulled {reference}", err=True)
    click.echo(str(desc.digest))


@cli.command()
@click.argument("image")
@click.argument("destination", required=False)
@click.option("--insecure", is_flag=True, help="Plain http (always used for localhost/127.0.0.1).")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "zstd:chunked"]), default=None,
              help="Convert layers stored otherwise to this (default: push them as stored); zstd:chunked "
                   "adds containers/storage's table of contents for podman's partial pulls.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest digest.")
@click.pass_context
def push(ctx, image, destination, insecure, compression, quiet) -> None:
    """Push IMAGE to DESTINATION (default: IMAGE's own HOST/REPO:TAG name)."""
    from minibuild.layer.compression import Compression
    from minibuild.transfer import remote as transfer

    config = registries(ctx)
    store = open_store(ctx)
    bars = _Bars(quiet)
    wanted = Compression.parse(compression) if compression else None
    try:
        result = transfer.push(store, image, destination, insecure=insecure, progress=bars,
                               layer_compression=wanted, registries=config)
    finally:
        bars.close()
    if not quiet:
        click.echo(f"Pushed {destination or image}: {len(result.uploaded)} uploaded, "
                   f"{len(result.skipped)} already there, {len(result.mounted)} mounted", err=True)
    click.echo(str(result.digest))


@cli.command()
@click.argument("registry", required=False, default="docker.io")
@click.option("-u", "--username", prompt=True, help="User name.")
@click.option("-p", "--password", help="Password (prefer --password-stdin: a -p stays in shell history).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--insecure", is_flag=True, help="Plain http (also when registries.conf says so).")
@click.pass_context
def login(ctx, registry, username, password, password_stdin, insecure) -> None:
    """Check credentials against REGISTRY (HOST[:PORT], default docker.io) and remember them:
    with the credential helper docker's config names for it, else in minibuild's login file."""
    from minibuild.transfer import auth
    from minibuild.transfer.registry import Client

    registry = auth.canonical_host(_registry_host(registry))
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    credentials = auth.Credentials(username, password)
    insecure = insecure or registries(ctx).is_insecure(registry)
    client = Client(registry, insecure=insecure, credentials=credentials)
    try:
        client.ping()
    finally:
        client.close()
    where = auth.store(registry, credentials)
    click.echo(f"Login succeeded (saved in {where})", err=True)


@cli.command()
@click.argument("registry", required=False, default="docker.io")
def logout(registry) -> None:
    """Forget the credentials for REGISTRY (minibuild's login file and docker's helper for it)."""
    from minibuild.transfer import auth

    registry = auth.canonical_host(_registry_host(registry))
    if not auth.forget(registry):
        raise click.UsageError(f"not logged in to {registry}")
    click.echo(f"Removed login credentials for {registry}", err=True)


def _registry_host(text: str) -> str:
    """HOST[:PORT] from what people type: `https://HOST:PORT/`, `HOST/v2/` and the like."""
    host = text.strip()
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    host = host.split("/", 1)[0]
    if not host:
        raise click.BadParameter(f"{text!r} names no registry host (want HOST[:PORT])")
    return host
