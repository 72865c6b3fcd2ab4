"""Paths inside an image root, resolved as a chroot would: symlinks never lead out."""

from __future__ import annotations

import os
import stat

from minibuild.errors import BuildError

_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS


def resolve_in_root(root: str, path: str, *, follow_last: bool = True) -> str:
    """The host path of an image path, following symlinks as if chrooted into `root`.

    Absolute link targets start again at `root` and `..` stops at it, so the result is
    always inside `root`. Missing components are kept as written.
    """
    pending = [p for p in path.split("/") if p][::-1]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        if not pending and not follow_last:
            done.append(part)
            break
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise BuildError(f"too many levels of symbolic links in {path}")
        target = os.readlink(host)
        if target.startswith("/"):
            done = []
        pending.extend(p for p in reversed(target.split("/")) if p)
    return os.path.join(root, *done)
