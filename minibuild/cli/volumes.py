"""`volume create|ls|inspect|rm|prune`: the store's volumes, with docker's flags and output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from minibuild.cli.app import cli, container_records, store_root


def _volumes(ctx: click.Context):
    """The store's volumes (the store itself stays closed: volumes need none of its locks)."""
    from minibuild.containers.volumes import Volumes

    return Volumes(store_root(ctx))


@cli.group()
def volume() -> None:
    """Manage volumes: directories containers mount that no layer, diff or commit holds."""


@volume.command("create")
@click.option("-d", "--driver", type=click.Choice(["local"]), default="local", show_default=True,
              help="Volume driver (only local).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label.")
@click.argument("name", required=False)
@click.pass_context
def create(ctx, driver, labels, name) -> None:
    """Create a volume (a random name when none is given); print its name."""
    volumes = _volumes(ctx)
    pairs = [label.partition("=")[::2] for label in labels]
    with volumes.locked():
        made = volumes.create(name or "", labels=pairs)
    click.echo(made.name)


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only the names.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="dangling=true|false",
              help="dangling=true: only volumes no container uses; name=TEXT: names holding TEXT.")
@click.option("--format", "fmt", default="table", show_default=True,
              help="table (default), json, or a Go template as docker takes: '{{.Name}}', "
                   "'table {{.Name}}\\t{{.Mountpoint}}', '{{json .}}'.")
@click.pass_context
def ls(ctx, quiet, filters, fmt) -> None:
    """List volumes."""
    from minibuild.containers.volumes import users

    containers = container_records(ctx).all()
    shown = _volumes(ctx).all()
    for text in filters:
        key, _, value = text.partition("=")
        if key == "dangling" and value in ("true", "1", "false", "0"):
            dangling = value in ("true", "1")
            shown = [v for v in shown if bool(users(v.name, containers)) != dangling]
        elif key == "name":
            shown = [v for v in shown if value in v.name]
        else:
            raise click.BadParameter(f"{text!r} (want dangling=true|false or name=TEXT)",
                                     param_hint="--filter")
    if fmt == "json" and not quiet:
        click.echo(json.dumps([v.inspect() for v in shown], indent=2))
        return
    from minibuild.cli import formatting, rows

    template = "{{.Name}}" if quiet else "table {{.Driver}}\\t{{.Name}}" if fmt == "table" else fmt
    click.echo(formatting.render(template, [rows.VolumeRow(v) for v in shown],
                                 rows.VOLUME_HEADERS), nl=False)


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx, names) -> None:
    """Show volumes as JSON (docker's fields)."""
    volumes = _volumes(ctx)
    click.echo(json.dumps([volumes.get(name).inspect() for name in names], indent=4))


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="No error for a volume that does not exist.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx, force, names) -> None:
    """Remove volumes no container uses (running or not); the others are refused."""
    from minibuild.containers.volumes import VolumeError

    volumes = _volumes(ctx)
    failed = False
    with volumes.locked():
        containers = container_records(ctx).all()
        for name in names:
            try:
                volumes.remove(name, containers)
            except VolumeError as exc:
                if force and str(exc).startswith("no such volume"):
                    continue
                click.echo(f"error: {exc}", err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
                failed = True
                continue
            click.echo(name)
    if failed:
        ctx.exit(1)


@volume.command("prune")
@click.option("-a", "--all", "everything", is_flag=True,
              help="Named volumes too, not only anonymous ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx, everything, force) -> None:
    """Remove the anonymous volumes no container uses (with -a, unused named ones too)."""
    from minibuild.text import human_size

    what = "local volumes" if everything else "anonymous local volumes"
    if not force and not _confirm(f"WARNING! This will remove {what} not used by at least one "
                                  "container.\nAre you sure you want to continue?"):
        return
    removed = prune_volumes(store_root(ctx), everything=everything)
    click.echo("Deleted Volumes:")
    for name, _ in removed:
        click.echo(name)
    click.echo(f"\nTotal reclaimed space: {human_size(sum(size for _, size in removed))}")


def _confirm(question: str) -> bool:
    """docker's [y/N] question; no answer (EOF, no terminal) is no."""
    click.echo(f"{question} [y/N] ", nl=False)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def prune_volumes(root: Path, *, everything: bool) -> list[tuple[str, int]]:
    """Remove unused volumes (anonymous ones, or all with `everything`); names and bytes."""
    from minibuild.containers.records import Containers
    from minibuild.maintenance.treesize import tree_bytes
    from minibuild.containers.volumes import VolumeError, Volumes, users

    volumes = Volumes(root)
    volumes.clean_leftovers()  # what a killed `volume rm` left: invisible to ls and df
    removed = []
    with volumes.locked():
        containers = Containers(root).all()
        for found in volumes.all():
            if (everything or found.anonymous) and not users(found.name, containers):
                size = tree_bytes(found.mountpoint)
                try:
                    volumes.remove(found.name, containers)
                except VolumeError:
                    continue
                removed.append((found.name, size))
    return removed
