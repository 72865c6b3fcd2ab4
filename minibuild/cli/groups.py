"""docker's command groups: `image ls|rm|prune|...`, `container ls|rm|prune|...` and
`system df|prune`, as aliases of the top-level commands; plus the prunes only a group has
(`image prune`, `container prune`, `system prune`)."""

from __future__ import annotations

import click

from minibuild.cli.app import cli, container_records, open_store

# docker's subcommand -> minibuild's top-level command (the ones not here are missing)
IMAGE_ALIASES = {"build": "build", "history": "history", "import": "import", "load": "load",
                 "ls": "images", "pull": "pull", "push": "push", "rm": "rmi", "save": "save",
                 "tag": "tag"}
CONTAINER_ALIASES = {"commit": "commit", "cp": "cp", "diff": "diff", "exec": "exec",
                     "kill": "kill", "logs": "logs", "ls": "ps", "pause": "pause",
                     "rename": "rename", "rm": "rm", "run": "run", "start": "start",
                     "stop": "stop", "top": "top", "unpause": "unpause", "wait": "wait"}
SYSTEM_ALIASES = {"df": "df"}


class AliasGroup(click.Group):
    """A group whose docker subcommand names resolve to top-level commands when asked, not at
    import: a test or a caller may import a command module (which imports `app`) before the
    commands it aliases are registered."""

    aliases: dict[str, str] = {}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """The group's own command, else the top-level command the alias names."""
        own = super().get_command(ctx, name)
        target = self.aliases.get(name)
        return own if own is not None or target is None else cli.get_command(ctx, target)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Own commands and the aliases whose targets exist."""
        targets = set(cli.list_commands(ctx))
        present = {name for name, target in self.aliases.items() if target in targets}
        return sorted(set(super().list_commands(ctx)) | present)


def _alias_group(aliases: dict[str, str]) -> type[AliasGroup]:
    return type("Aliases", (AliasGroup,), {"aliases": aliases})


@cli.group(cls=_alias_group(IMAGE_ALIASES))
def image() -> None:
    """Manage images (docker's `image` group: aliases of build, images, rmi, ...)."""


@cli.group(cls=_alias_group(CONTAINER_ALIASES))
def container() -> None:
    """Manage containers (docker's `container` group: aliases of ps, rm, run, ...)."""


@cli.group(cls=_alias_group(SYSTEM_ALIASES))
def system() -> None:
    """Manage minibuild (docker's `system` group: df, prune)."""


def _typed_inspect(kind: str) -> click.Command:
    """`image inspect` / `container inspect`: `inspect --type KIND`."""
    from minibuild.cli.inspection import inspect

    @click.command("inspect", help=f"Show {kind}s as JSON (docker's shape), or through a Go "
                                   "template.")
    @click.option("-f", "--format", "fmt", default=None, help="A Go template, as docker's.")
    @click.argument("names", nargs=-1, required=True)
    @click.pass_context
    def typed(ctx, fmt, names) -> None:
        ctx.invoke(inspect, fmt=fmt, kind=kind, names=names)

    return typed


image.add_command(_typed_inspect("image"))
container.add_command(_typed_inspect("container"))


# -- prunes ----------------------------------------------------------------------------------------


def _confirm(force: bool, what: str) -> bool:
    """docker's warning and [y/N] question, skipped with -f (no answer is no)."""
    from minibuild.cli.volumes import _confirm as ask

    return force or ask(f"WARNING! This will remove {what}.\nAre you sure you want to continue?")


@image.command("prune")
@click.option("-a", "--all", "everything", is_flag=True,
              help="Every image no container uses, not only dangling (untagged) ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def image_prune(ctx, everything, force) -> None:
    """Remove dangling images (with -a: every image no container uses), then what only they
    needed."""
    what = ("all images without at least one container associated to them" if everything
            else "all dangling images")
    if _confirm(force, what):
        _report_images(_collect(ctx, unused=everything))


def _collect(ctx, **how):
    """gc.collect on the store, dangling images first."""
    from minibuild.maintenance import gc

    return gc.collect(open_store(ctx), dangling=True, **how)


def _report_images(collected) -> None:
    """docker's `image prune` output."""
    from minibuild.cli.maintenance import echo_deleted_images
    from minibuild.text import human_size

    echo_deleted_images(collected)
    click.echo(f"Total reclaimed space: {human_size(collected.freed)}")


@container.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def container_prune(ctx, force) -> None:
    """Remove every stopped container (created, exited or dead)."""
    from minibuild.text import human_size

    if not _confirm(force, "all stopped containers"):
        return
    removed, freed = prune_containers(container_records(ctx))
    if removed:
        click.echo("Deleted Containers:")
        click.echo("\n".join(removed) + "\n")
    click.echo(f"Total reclaimed space: {human_size(freed)}")


def prune_containers(records) -> tuple[list[str], int]:
    """Remove the containers not running and not being started or stopped; ids and bytes."""
    from minibuild.maintenance.treesize import freed_bytes

    removed, freed = [], 0
    for found in records.all():
        if records.status(found) == "running" or records.supervised(found.id):
            continue
        freed += freed_bytes([records.path(found.id)])
        records.remove(found.id)
        removed.append(found.id)
    return removed, freed


@system.command("prune")
@click.option("-a", "--all", "everything", is_flag=True,
              help="Every image no container uses, and the whole build cache.")
@click.option("--volumes", "drop_volumes", is_flag=True,
              help="Also remove the anonymous volumes no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def system_prune(ctx, everything, drop_volumes, force) -> None:
    """Remove stopped containers, dangling images (with -a: unused ones and the build cache),
    with --volumes anonymous volumes, then what only they needed."""
    from dataclasses import replace

    from minibuild.cli.volumes import prune_volumes

    images = "all images without at least one container associated to them" if everything \
        else "all dangling images"
    what = ("  - all stopped containers\n" + ("  - all anonymous volumes not used by at least "
            "one container\n" if drop_volumes else "") + f"  - {images}\n  - "
            + ("all build cache" if everything else "unused build cache"))
    if not force and not _confirm(False, "\n" + what):
        return
    removed, freed = prune_containers(container_records(ctx))
    if removed:
        click.echo("Deleted Containers:\n" + "\n".join(removed) + "\n")
    volumes = prune_volumes(open_store(ctx).root, everything=False) if drop_volumes else []
    if volumes:
        click.echo("Deleted Volumes:\n" + "\n".join(name for name, _ in volumes) + "\n")
    collected = _collect(ctx, unused=everything, drop_cache=everything)
    _report_images(replace(collected, freed=collected.freed + freed
                           + sum(size for _, size in volumes)))
