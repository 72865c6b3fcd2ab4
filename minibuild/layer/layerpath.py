"""A path of an image, looked up through its stack of unpacked layer dirs without mounting them.

Overlay's rules, read from the lowerdirs: the topmost layer holding a name decides what it is; a
whiteout (char 0:0, or an xattr-marked empty file) hides it; a dir merges with the dirs of
the same name below it down to an opaque one, a whiteout or a non-dir. Symlinks are followed
as a chroot would (absolute targets start again at the image root, `..` stops at it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minibuild.layer import whiteout
from minibuild.errors import BuildError
from minibuild.layer.xattrs import layer_xattrs

_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS


@dataclass(frozen=True)
class ImagePath:
    """Where an image path leads: its components with symlinks resolved, and the image's
    entry for each leading component that exists (the rest are missing)."""

    parts: tuple[str, ...]
    found: tuple[os.stat_result, ...]  # lstat of the top layer's entry, one per existing part

    @property
    def exists(self) -> bool:
        """True when the whole path exists in the image."""
        return len(self.found) == len(self.parts)

    @property
    def path(self) -> str:
        """The resolved path, absolute."""
        return "/" + "/".join(self.parts)

    def is_dir(self) -> bool:
        """True when the path exists and is a directory."""
        return self.exists and (not self.found or stat.S_ISDIR(self.found[-1].st_mode))


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


def resolve(lowers: Sequence[Path], path: str) -> ImagePath:
    """Look `path` up in the image made of `lowers` (top first), symlinks followed; BuildError
    when a component is a file or the links loop."""
    root = _root_stack(lowers)
    pending = [p for p in path.split("/") if p][::-1]
    parts: list[str] = []
    found: list[os.stat_result] = []
    stacks: list[tuple[str, ...]] = [root]
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if len(parts) > len(found):
                parts.pop()
            elif parts:
                del parts[-1], found[-1], stacks[-1]
            continue
        if len(parts) > len(found):  # below a missing component: missing too
            parts.append(part)
            continue
        entry = _entry(stacks[-1], part)
        if entry is None:
            parts.append(part)
            continue
        host, st, stack = entry
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise BuildError(f"too many levels of symbolic links in {path}")
            target = os.readlink(host)
            if target.startswith("/"):
                parts, found, stacks = [], [], [root]
            pending.extend(p for p in reversed(target.split("/")) if p)
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise BuildError(f"{'/' + '/'.join([*parts, part])} is not a directory in the image "
                             f"(looking up {path})")
        parts.append(part)
        found.append(st)
        stacks.append(stack)
    return ImagePath(tuple(parts), tuple(found))

