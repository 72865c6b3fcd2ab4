"""The click group, the store and container-record openers every command shares, and the
entry point.

Heavy modules (rich, lark, zstandard, the engine) are imported inside the commands that need
them, so `minibuild --help` and `history` start fast. Commands live in the sibling modules, one
per area, and register themselves on the `cli` group.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from minibuild.errors import Interrupted, MinibuildError

if TYPE_CHECKING:
    from minibuild.build import memo


def store_root(ctx: click.Context) -> Path:
    """The store root named by --root / MINIBUILD_ROOT, without opening the store (no locks)."""
    from minibuild.store.paths import default_root

    return Path(ctx.find_root().obj.get("root") or default_root())


def open_store(ctx: click.Context):
    """Open the store named by --root / MINIBUILD_ROOT (closed when the command ends)."""
    from minibuild.store.layout import Store

    store = Store.open(store_root(ctx))
    ctx.call_on_close(store.close)
    return store


def container_records(ctx: click.Context):
    """The container records of the store root (the store itself stays closed)."""
    from minibuild.containers.records import Containers

    return Containers(store_root(ctx))


def report_error(exc: MinibuildError) -> None:
    """An expected failure as main() shows it (`error: ...`, `hint: ...`), for commands that go
    on after one (rmi, rm)."""
    click.echo(f"error: {exc}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def registries_conf(ctx: click.Context) -> str | None:
    """The file --registries-conf / MINIBUILD_REGISTRIES_CONF names (None: the usual places)."""
    return ctx.find_root().obj.get("registries_conf")


def registries(ctx: click.Context):
    """The registries config (mirrors, insecure, blocked, search registries) for this command."""
    from minibuild.transfer import registryconf

    return registryconf.load(registries_conf(ctx))




# Where each top-level command lives. A module registers its commands on `cli` when imported,
# and only the module a command line names is imported: all of them would cost ~40 ms of
# start-up (tests/unit/cli/test_app.py checks this table against the modules).
COMMAND_MODULES = {
    "building": ("build",),
    "images": ("history", "images", "tag", "parse", "rmi", "layers"),
    "inspection": ("inspect",),
    "transfer": ("save", "load", "import", "pull", "push", "login", "logout"),
    "maintenance": ("fsck", "prune", "df"),
    "containers": ("ps", "stop", "start", "rm", "logs", "diff", "commit",
                   "pause", "unpause"),
    "run": ("run", "container-supervise", "exec"),
    "volumes": ("volume",),
    "unshare": ("unshare",),
    "lifecycle": ("kill", "wait", "rename", "top"),
    "copying": ("cp",),
    "groups": ("image", "container", "system"),
}


def load_commands(name: str | None = None) -> None:
    """Import the module of command `name` (every command module when None)."""
    import importlib

    for module, names in COMMAND_MODULES.items():
        if name is None or name in names:
            importlib.import_module(f"minibuild.cli.{module}")


class Group(click.Group):
    """A click group whose "did you mean" never suggests a hidden (internal) command."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """As click's, with the suggestions drawn from the visible commands only."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            visible = [name for name in self.list_commands(ctx)
                       if not self.commands[name].hidden]
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=visible,
                                                 ctx=ctx) from None


Group.group_class = Group  # subgroups (volume, image, container, system) are Groups too


class TopGroup(Group):
    """The top-level group: a command's module is imported when the command is named."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command `name`, its module imported first."""
        if name not in self.commands:
            load_commands(name)
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command (all modules imported: `--help` lists them)."""
        load_commands()
        return super().list_commands(ctx)


@click.group(cls=TopGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False), envvar="MINIBUILD_ROOT",
              help="Store directory (default: /var/lib/minibuild as root).")
@click.option("--registries-conf", type=click.Path(dir_okay=False), envvar="MINIBUILD_REGISTRIES_CONF",
              help="registries.conf (TOML) or daemon.json to read instead of "
                   "~/.config/containers/registries.conf, /etc/containers/registries.conf, daemon.json.")
@click.version_option(package_name="minibuild")
@click.pass_context
def cli(ctx: click.Context, root: str | None, registries_conf: str | None) -> None:
    """minibuild: build OCI images from a Buildfile (Dockerfile syntax), without a daemon."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    ctx.obj["registries_conf"] = registries_conf


def _raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signum)


def main(memo_command: memo.Command | None = None) -> None:
    """Entry point: run the command, turn expected failures into one line and an exit code.

    `memo_command` is this command line's build memo key (minibuild.__main__ found none to
    answer from): a `build` that succeeds writes its memo under it."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    # Docker's umask for steps and the files we create: a user's umask must not change layers.
    os.umask(0o022)
    try:
        status = cli.main(standalone_mode=False, obj={"memo": memo_command})
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Interrupted as exc:
        click.echo("interrupted", err=True)
        sys.exit(exc.exit_code)
    except MinibuildError as exc:
        report_error(exc)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line, the traceback on demand
        if os.environ.get("MINIBUILD_DEBUG"):
            raise
        click.echo(f"minibuild: internal error: {type(exc).__name__}: {exc} "
                   "(run with MINIBUILD_DEBUG=1 for the traceback, and please report it)", err=True)
        sys.exit(70)
    sys.exit(status if isinstance(status, int) else 0)
