"""A path of an image, looked up through its stack of unpacked layer dirs without mounting them.

Overlay's rules, read from the lowerdirs: the topmost layer holding a name decides what it is; a
whiteout (char 0:0, or an xattr-marked empty file) hides it; a dir merges with the dirs of
the same name below it down to an opaque one, a whiteout or a non-dir. Symlinks are followed
as a chroot would (absolute targets start again at the image root, `..` stops at it) by the one
walk of fs/rootwalk.py; this module is the lookup of one name in a merged dir.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from minibuild.errors import BuildError
from minibuild.fs.rootpath import ImagePath
from minibuild.fs.rootwalk import LinkLoop, walk
from minibuild.layer import whiteout
from minibuild.layer.xattrs import layer_xattrs


def _entry(stack: Sequence[str], name: str) -> tuple[str, os.stat_result, tuple[str, ...]] | None:
    """The entry `name` in a merged dir (its layer dirs, top first): the top one's host path
    and lstat and, for a dir, the layer dirs it merges; None when absent or whited out."""
    found, top, below = None, "", []
    for layer_dir in stack:
        path = os.path.join(layer_dir, name)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        marks = layer_xattrs(path) if stat.S_ISDIR(st.st_mode) or (
            stat.S_ISREG(st.st_mode) and st.st_size == 0) else {}
        if found is None:
            if whiteout.is_overlay_whiteout(st, marks):
                return None
            found, top = st, path
            if not stat.S_ISDIR(st.st_mode):
                return top, found, ()
        elif not stat.S_ISDIR(st.st_mode):
            break  # a whiteout or a file under our dir: nothing below it shows
        below.append(path)
        if whiteout.is_overlay_opaque(st, marks):
            break
    return (top, found, tuple(below)) if found is not None else None


def _root_stack(lowers: Sequence[Path]) -> tuple[str, ...]:
    """The layer dirs that make the image's `/` (down to an opaque root)."""
    stack = []
    for lower in lowers:
        stack.append(str(lower))
        if whiteout.is_overlay_opaque(os.lstat(lower), layer_xattrs(str(lower))):
            break
    return tuple(stack)


class _Node(NamedTuple):
    """An existing entry of the image: its image path, the top layer's host path and lstat, and
    (for a dir) the layer dirs it merges."""

    path: str  # "" for the root
    host: str
    st: os.stat_result | None
    stack: tuple[str, ...]


class _ImageTree:
    """The image made of layer dirs (top first), as a tree for the walk of fs/rootwalk.py."""

    def __init__(self, lowers: Sequence[Path], path: str) -> None:
        self._root = _Node("", "", None, _root_stack(lowers))
        self._path = path  # the path being looked up, for messages

    def root(self) -> _Node:
        """The image's `/`."""
        return self._root

    def child(self, parent: _Node, name: str, last: bool) -> _Node | None:
        """The entry `name` of a merged dir; BuildError for a file with components below it."""
        entry = _entry(parent.stack, name)
        if entry is None:
            return None
        node = _Node(f"{parent.path}/{name}", *entry)
        mode = node.st.st_mode
        if not last and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
            raise BuildError(f"{node.path} is not a directory in the image (looking up {self._path})")
        return node

    def link(self, node: _Node) -> str | None:
        """The target of a symbolic link, read from the layer dir that holds it."""
        return os.readlink(node.host) if stat.S_ISLNK(node.st.st_mode) else None

    def release(self, node: _Node) -> None:
        """Nothing to let go of."""


def resolve(lowers: Sequence[Path], path: str) -> ImagePath:
    """Look `path` up in the image made of `lowers` (top first), symlinks followed; BuildError
    when a component is a file or the links loop."""
    try:
        found = walk(_ImageTree(lowers, path), path)
    except LinkLoop:
        raise BuildError(f"too many levels of symbolic links in {path}") from None
    return ImagePath(found.parts + found.rest, tuple(node.st for node in found.nodes[1:]))
