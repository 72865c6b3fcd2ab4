"""A path's state without reading its content: stat signatures, symlink trails, racy timestamps.

Used by the context's hash cache and by the build memo to tell "unchanged" from "maybe changed".
Only the standard library: the memo checks these at start-up.
"""

from __future__ import annotations

import os
import stat

_RACY_NS = 100_000_000        # fine timestamps: a write in the same tick is < 100 ms away
_COARSE_RACY_NS = 2_000_000_000  # 1 s (ext4 with 128-byte inodes, NFS) or 2 s (FAT) timestamps
_MAX_LINKS = 40  # Linux's symlink limit (ELOOP)


def signature(path: str) -> list[int] | None:
    """Full state: mode, dev, inode, size, mtime_ns, ctime_ns (lstat); None when absent.

    A content change always moves ctime, which no user can set back."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_mode, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def identity(path: str) -> list | None:
    """Where a name leads, not what it holds: a symlink's mode and target text; for anything
    else mode, dev and inode (the dirs a path passes through may gain and lose entries freely).
    The target text, not the inode: `rm l; ln -s b l` may reuse the inode in the same tick."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(st.st_mode):
        return [st.st_mode, os.readlink(path)]
    return [st.st_mode, st.st_dev, st.st_ino]


def settled(sig: list[int], started_ns: int) -> bool:
    """True when a state read now cannot hide a write made in the same timestamp tick before
    `started_ns` ("racy git"): its mtime and ctime are older than one tick. Whole-second
    timestamps are taken to come from a coarse filesystem."""
    mtime, ctime = sig[4], sig[5]
    coarse = mtime % 1_000_000_000 == 0 and ctime % 1_000_000_000 == 0
    return max(mtime, ctime) < started_ns - (_COARSE_RACY_NS if coarse else _RACY_NS)


def trail(path: str) -> list[str]:
    """Every name whose identity decides where `path` leads: each component from the root and,
    through each symlink, the components of its target (as realpath walks them). A missing
    component ends the trail (its absence is part of the state)."""
    names: list[str] = []
    # Not abspath: it folds `a/..` by name, while the kernel resolves `a` (maybe a link) first.
    _follow(path if os.path.isabs(path) else os.path.join(os.getcwd(), path), names, 0)
    return names


def _follow(path: str, names: list[str], links: int) -> str | None:
    current = "/"
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        name = os.path.join(current, part)
        names.append(name)
        try:
            st = os.lstat(name)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode) and links < _MAX_LINKS:
            target = os.readlink(name)
            resolved = _follow(os.path.join(current, target), names, links + 1)
            if resolved is None:
                return None
            current = resolved
        else:
            current = name
    return current
