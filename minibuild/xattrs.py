"""Reading the xattrs of an overlay-format entry: the ones a layer keeps and overlay's markers."""

from __future__ import annotations

import errno
import os

from minibuild import whiteout


def layer_xattrs(path: bytes) -> dict[str, bytes]:
    """The xattrs that matter for layers (kept ones and overlay markers), links not followed."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in names:
        if whiteout.needs_xattr_value(name):
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False)
            except OSError as e:
                if e.errno != errno.ENODATA:  # removed since listxattr: nothing to keep
                    raise
    return out
