"""Test helpers for real filesystem trees: mount an overlay, list a tree for comparison."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def overlay(merged: Path, lowers: list[Path], upper: Path | None = None,
            work: Path | None = None) -> Iterator[Path]:
    """Mount an overlay of `lowers` (top first), writable when `upper` is given; always unmounted.

    A read-only mount gets an empty bottom layer, so one lower is enough (the view is the same).
    """
    if upper is None:
        bottom = merged.parent / (merged.name + "-empty")
        bottom.mkdir(exist_ok=True)
        lowers = [*lowers, bottom]
    opts = "lowerdir=" + ":".join(map(str, lowers)) + ",redirect_dir=off,metacopy=off"
    if upper is not None:
        opts += f",upperdir={upper},workdir={work}"
    merged.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def listing(root: Path, *, full: bool = False) -> list[tuple]:
    """Every entry as (path, type, mode, uid, gid, size, content sha256 / link target / rdev);
    `full` adds the root itself, mtimes and user./security. xattrs."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = ["."] if full and dirpath == str(root) else []
        for name in [*here, *sorted(dirnames + filenames)]:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                # overlay's readdir of a non-merged lower dir passes its whiteouts through,
                # but a lookup of them fails: they are not part of the view
                continue
            entry = (os.path.normpath(os.path.relpath(path, root)), stat.S_IFMT(st.st_mode),
                     stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     0 if stat.S_ISDIR(st.st_mode) else st.st_size, _content(path, st))
            if full:
                entry += (st.st_mtime_ns, _xattrs(path))
            out.append(entry)
    return out


def _content(path: str, st: os.stat_result) -> object:
    if stat.S_ISREG(st.st_mode):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return st.st_rdev
    return None


def _xattrs(path: str) -> list[tuple[str, bytes]]:
    return sorted((k, os.getxattr(path, k, follow_symlinks=False))
                  for k in os.listxattr(path, follow_symlinks=False)
                  if k.startswith(("user.", "security.")))
