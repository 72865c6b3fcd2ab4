"""Bytes of trees on disk, the way `du -sb` counts them: apparent sizes of files, directories
and symlinks, a hard-linked file once (COPY reuse links one file into many layer dirs).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from minibuild.fs import dirstack


def tree_bytes(path: Path) -> int:
    """`du -sb PATH`: apparent bytes of every entry below and including path, hardlinks once."""
    return _walk_bytes(path, {}, None)


def _walk_bytes(path: Path, links: dict[tuple[int, int], list], owner: str | None) -> int:
    """Bytes of a tree without its multi-linked files, which go into `links` instead:
    (dev, ino) -> [size, links seen, nlink, set of owners]."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total = st.st_size
    # by dir fd (dirstack): any depth; a running container (or a build's cache mount) may
    # delete what we are walking: what vanished meanwhile is simply not counted (df must not
    # fail on a busy volume)
    try:
        for entry in dirstack.walk(path):
            st = entry.st
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                known = links.setdefault((st.st_dev, st.st_ino), [st.st_size, 0, st.st_nlink, set()])
                known[1] += 1
                known[3].add(owner)
                continue
            total += st.st_size
    except (FileNotFoundError, NotADirectoryError, dirstack.Moved):
        pass  # the root itself went away, or a dir moved under the walk: a partial count
    if owner is None:  # a tree on its own: each linked file once
        total += sum(size for size, _, _, _ in links.values())
    return total


def freed_bytes(paths: Sequence[Path]) -> int:
    """What deleting these trees frees: a file also linked from elsewhere frees nothing."""
    links: dict[tuple[int, int], list] = {}
    total = sum(_walk_bytes(p, links, str(p)) for p in paths)
    return total + sum(size for size, seen, nlink, _ in links.values() if seen >= nlink)


def layer_dir_items(paths: Sequence[Path]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Sizes of layer dirs as df items: `dir:<id>` for what one dir holds alone, and an
    `ino:<dev>:<ino>` item for a file linked into several (COPY reuse), so that it counts once
    and as shared by every image whose layers link it; with each dir's `ino:` items."""
    links: dict[tuple[int, int], list] = {}
    sizes = {f"dir:{p.name}": _walk_bytes(p, links, p.name) for p in paths}
    extra: dict[str, set[str]] = {p.name: set() for p in paths}
    for (dev, ino), (size, _, _, owners) in links.items():
        if len(owners) == 1:
            sizes[f"dir:{next(iter(owners))}"] += size
            continue
        item = f"ino:{dev}:{ino}"
        sizes[item] = size
        for owner in owners:
            extra[owner].add(item)
    return sizes, extra
