"""`cp`: files between a container and the host, as `docker cp` (either side `-` for a tar
stream). A running container's root is reached through its init (/proc/PID/root, opened while
its start time is checked); a stopped one's overlay is mounted in a child for the copy while
its supervisor lock keeps it from starting."""

from __future__ import annotations

import os
import sys
from typing import Callable

import click

from minibuild.cli.app import cli, container_records, store_root


def split_argument(text: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` as (container, path); a host path (or `-`) as (None, text)."""
    head, sep, tail = text.partition(":")
    if not sep or not head or "/" in head or text.startswith((".", "/")):
        return None, text
    return head, tail or "/"


@cli.command()
@click.option("-a", "--archive", is_flag=True, help="Keep owners (default: the receiving "
              "side's user: root in the container, you on the host).")
@click.argument("source")
@click.argument("dest")
@click.pass_context
def cp(ctx, archive, source, dest) -> None:
    """Copy files between a container and the host: cp CONTAINER:SRC DEST | cp SRC
    CONTAINER:DEST (`-` as DEST writes a tar stream, as SRC reads one)."""
    from minibuild.containers import filecopy

    (src_box, src_path), (dst_box, dst_path) = split_argument(source), split_argument(dest)
    if (src_box is None) == (dst_box is None):
        raise click.UsageError("copying between containers or between host paths is not "
                               "supported: one side must be CONTAINER:PATH")
    if src_box is not None:
        if dst_path == "-":
            out = sys.stdout.buffer
            _in_root(ctx, src_box, lambda root: filecopy.tar_out(root, src_path, out))
            return
        host = os.path.abspath(dst_path)
        _in_root(ctx, src_box, lambda root: filecopy.copy_out(root, src_path, host,
                                                              archive=archive))
        return
    if src_path == "-":
        _in_root(ctx, dst_box, lambda root: filecopy.untar_in(root, sys.stdin.buffer, dst_path))
        return
    host = os.path.abspath(src_path) + ("/." if src_path.rstrip("/").endswith("/.") else "")
    if not os.path.lexists(host.removesuffix("/.")):
        raise click.BadParameter(f"no such file or directory: {src_path}", param_hint="SRC")
    _in_root(ctx, dst_box, lambda root: filecopy.copy_in(root, host, dst_path, archive=archive))


def _in_root(ctx: click.Context, text: str, fn: Callable[[int], None]) -> None:
    """Call fn with an O_PATH fd on the container's root, running or not."""
    from minibuild.containers import exectarget, runtime
    from minibuild.sandbox.sandbox import Sandbox

    records = container_records(ctx)
    found = records.find(text)
    if records.status(found) == "running":
        target = exectarget.open_target(records, found)
        try:
            fn(target.root)
        finally:
            target.close()
        return
    lock = records.supervise(found.id)  # it cannot start while we copy
    try:
        fs = runtime.rootfs(store_root(ctx), found)
        merged = os.path.abspath(fs.merged)

        def copy() -> None:
            root = os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fn(root)
            finally:
                os.close(root)

        Sandbox().call(fs, lambda: None, pre_chroot=copy)
    finally:
        lock.release()
