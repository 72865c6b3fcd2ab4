"""`docker diff` from an overlay upper dir: A (added), C (changed), D (deleted) paths.

Follows docker's rules (moby `pkg/archive/changes.go`): a whiteout is D; a path the image's
layers do not show is A; one they show is C, except a copied-up directory whose mode, size and
mtime did not change; the parent of an A or D is C (unless it is `/`). Two refinements over
docker: an opaque directory (deleted and recreated) is C or A rather than D, and the lower
children it hides are listed as D; existence in the image respects the lowers' own whiteouts,
opaque dirs and non-directory parents, resolved without following symlinks out of a layer.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from minibuild.layer import whiteout


@dataclass(frozen=True, order=True)
class Change:
    """One line of `diff`: a path inside the container and its kind."""

    path: str  # absolute, e.g. /tmp/file.txt
    kind: str  # "A", "C" or "D"

    def line(self) -> str:
        """`A /path`, as docker prints it."""
        return f"{self.kind} {self.path}"


def _overlay_xattrs(path: str) -> dict[str, bytes]:
    """overlay's own xattrs of a path (whiteout/opaque markers), without following links."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.ENOENT):
            return {}
        raise
    out = {}
    for name in names:
        if whiteout.is_overlay_xattr(name):
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                continue
    return out


def _needs_xattrs(st: os.stat_result) -> bool:
    """Only dirs (opaque) and empty files (xattr whiteouts) can carry a marker we care about."""
    return stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0)


def _is_whiteout(path: str, st: os.stat_result) -> bool:
    xattrs = _overlay_xattrs(path) if stat.S_ISREG(st.st_mode) and st.st_size == 0 else {}
    return whiteout.is_overlay_whiteout(st, xattrs)


def _is_opaque(path: str, st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and whiteout.is_overlay_opaque(st, _overlay_xattrs(path))


# -- what the image's layers show -----------------------------------------------------------------


def _in_layer(layer: Path, parts: Sequence[str]) -> tuple[str, os.stat_result | None]:
    """("found", st), ("absent", None) = look further down, or ("hidden", None) = stop here."""
    path, opaque_above = os.fspath(layer), False
    for i, name in enumerate(parts):
        path = os.path.join(path, name)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return ("hidden" if opaque_above else "absent"), None
        if _is_whiteout(path, st):
            return "hidden", None
        if i == len(parts) - 1:
            return "found", st
        if not stat.S_ISDIR(st.st_mode):  # a file or symlink here hides everything below
            return "hidden", None
        opaque_above = opaque_above or _is_opaque(path, st)
    return "found", os.lstat(layer)


def lower_stat(lowers: Sequence[Path], parts: Sequence[str]) -> os.stat_result | None:
    """lstat of a path as the image's layers (top first) show it; None when they do not."""
    for layer in lowers:
        state, st = _in_layer(layer, parts)
        if state == "found":
            return st
        if state == "hidden":
            return None
    return None


def lower_children(lowers: Sequence[Path], parts: Sequence[str]) -> list[str]:
    """The names the image's layers show inside a directory."""
    seen: dict[str, bool] = {}  # name -> visible (False: whited out by a higher layer)
    for layer in lowers:
        state, st = _in_layer(layer, parts)
        if state == "hidden" or (state == "found" and not stat.S_ISDIR(st.st_mode)):
            break
        if state == "absent":
            continue
        directory = os.path.join(os.fspath(layer), *parts)
        with os.scandir(directory) as it:
            for entry in it:
                st_child = entry.stat(follow_symlinks=False)
                seen.setdefault(entry.name, not _is_whiteout(entry.path, st_child))
        if _is_opaque(directory, st):
            break
    return sorted(name for name, visible in seen.items() if visible)


# -- the walk -------------------------------------------------------------------------------------


def _same_dir(upper: os.stat_result, lower: os.stat_result) -> bool:
    """docker's test for a directory copied up but not itself changed."""
    return (stat.S_ISDIR(lower.st_mode) and upper.st_size == lower.st_size
            and upper.st_mode == lower.st_mode and upper.st_mtime_ns == lower.st_mtime_ns)


def _walk(directory: str, parts: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, os.stat_result]]:
    """Every entry below `directory`, parents before children, names sorted."""
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        yield parts + (entry.name,), entry.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(entry.path, parts + (entry.name,))


def changes(upper: Path, lowers: Sequence[Path]) -> list[Change]:
    """What a container changed, from its upper dir and its image's layer dirs (top first)."""
    found: dict[str, str] = {}
    changed_dirs: set[str] = set()

    def parent_changed(path: str) -> None:
        parent = path.rpartition("/")[0] or "/"
        if parent != "/" and parent not in changed_dirs:
            found.setdefault(parent, "C")
            changed_dirs.add(parent)

    for parts, host_path, st in _walk(os.fspath(upper), ()):
        path = "/" + "/".join(parts)
        if _is_whiteout(host_path, st):
            found[path] = "D"
            parent_changed(path)
            continue
        below = lower_stat(lowers, parts)
        if _is_opaque(host_path, st) and below is not None and stat.S_ISDIR(below.st_mode):
            present = set(os.listdir(host_path))
            for name in lower_children(lowers, parts):
                if name not in present:
                    found[f"{path}/{name}"] = "D"
        elif below is not None and stat.S_ISDIR(st.st_mode) and _same_dir(st, below):
            continue  # copied up for a child's sake; not a change by itself
        kind = "A" if below is None else "C"
        found[path] = kind
        if stat.S_ISDIR(st.st_mode):
            changed_dirs.add(path)
        if kind == "A":
            parent_changed(path)
    return [Change(path, kind) for path, kind in sorted(found.items())]
