"""`minibuild unshare`: a command inside rootless minibuild's user namespace (`buildah unshare`)."""

from __future__ import annotations

import errno
import os

import click

from minibuild.cli.app import cli, store_root
from minibuild.errors import SandboxError


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def unshare(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run COMMAND (default: $SHELL) as uid 0 of the rootless user namespace, in a mount
    namespace of its own, with MINIBUILD_ROOT set: to look at or clean the store with the ids
    mapped as minibuild sees them. As root: in the host's namespaces."""
    from minibuild.fs import idmap
    from minibuild.sandbox import linux
    from minibuild.sandbox.process import exec_failure

    argv = list(command) or [os.environ.get("SHELL") or "/bin/sh"]
    os.environ["MINIBUILD_ROOT"] = str(store_root(ctx).absolute())
    if idmap.rootless():
        try:  # mounts made inside (e.g. an overlay to look at) stay there
            linux.unshare(linux.CLONE_NEWNS)
        except OSError as exc:
            raise SandboxError(f"cannot create a mount namespace: {exc.strerror}") from exc
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:  # as a shell says it: 127 not found, 126 not runnable
        message, code = exec_failure(argv[0], exc.errno or errno.ENOENT)
        click.echo(message.decode().rstrip("\n"), err=True)
        ctx.exit(code)
