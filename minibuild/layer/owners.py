"""Owners and device nodes of unpacked entries, and what a user namespace cannot represent.

As real root every id is there to give; rootless minibuild runs as uid 0 of a user namespace
that maps only 0..N (the caller and its subordinate range), so an entry owned by an id beyond
it, or a device node (no mknod in a user namespace), fails with a message saying so, as
podman's "potentially insufficient UIDs or GIDs available in user namespace" does.
"""

from __future__ import annotations

import errno
import os
import tarfile

from minibuild.errors import LayerError
from minibuild.fs import idmap


def chown(where: int | bytes, member: tarfile.TarInfo) -> None:
    """Give an entry its owner; in a user namespace an id it does not map is a clear error."""
    try:
        os.chown(where, member.uid, member.gid, follow_symlinks=isinstance(where, int))
    except OSError as exc:
        if exc.errno != errno.EINVAL or not idmap.in_user_namespace():
            raise
        raise LayerError(unmapped_owner(member.name, member.uid, member.gid)) from None


def unmapped_owner(name: str, uid: int, gid: int) -> str:
    """The message for an entry whose owner this user namespace cannot represent."""
    which = [f"uid {uid}"] if not idmap.is_mapped(uid, "uid") else []
    which += [f"gid {gid}"] if not idmap.is_mapped(gid, "gid") else []
    return (f"layer entry {name!r} is owned by {' and '.join(which) or f'{uid}:{gid}'}, outside "
            f"the ids rootless minibuild maps (uids {idmap.describe_map('uid')}, gids "
            f"{idmap.describe_map('gid')}): potentially insufficient UIDs or GIDs in "
            "/etc/subuid and /etc/subgid for this image (give the user a larger range)")


def mknod(path: bytes, mode: int, member: tarfile.TarInfo) -> None:
    """Create a layer's device node (root only; rootless: a clear error)."""
    try:
        os.mknod(path, mode, os.makedev(member.devmajor, member.devminor))
    except PermissionError:
        if not idmap.in_user_namespace():
            raise
        raise LayerError(f"layer entry {member.name!r} is a device node: rootless minibuild "
                         "cannot create one (a user namespace may not mknod)") from None
