"""Reading the xattrs of an overlay-format entry: the ones a layer keeps and overlay's markers."""

from __future__ import annotations

import errno
import os

from minibuild.fs import idmap
from minibuild.layer import whiteout

TRUSTED_OPAQUE = "trusted.overlay.opaque"
USER_OPAQUE = "user.overlay.opaque"


def opaque_xattr() -> str:
    """The xattr that makes a lower dir opaque for the overlays minibuild mounts here:
    trusted.* as real root; user.* in a user namespace (rootless), where the mounts use
    `userxattr` and trusted.* cannot be written. Snapshot reads both forms."""
    return USER_OPAQUE if idmap.in_user_namespace() else TRUSTED_OPAQUE


def layer_xattrs(target: bytes | int) -> dict[str, bytes]:
    """The xattrs that matter for layers (kept ones and overlay markers) of a path (links not
    followed) or of an open fd (no path walk: the snapshot's fast path for regular files)."""
    # An fd names the file itself; follow_symlinks=False is only for paths.
    nofollow = {} if isinstance(target, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(target, **nofollow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in names:
        if whiteout.needs_xattr_value(name):
            try:
                out[name] = os.getxattr(target, name, **nofollow)
            except OSError as e:
                if e.errno != errno.ENODATA:  # removed since listxattr: nothing to keep
                    raise
    return out
