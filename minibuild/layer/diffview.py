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
from typing import Sequence

from minibuild.fs import dirstack
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

# Where a dir path stands in one layer: ("dir", host path, opaque above) when the layer has it as
# a real dir, ("absent", "", opaque above) when it lacks it (look further down), ("hidden", ...)
# when the layer hides it (whiteout, opaque dir or non-dir above), ("other", ...) for a non-dir.
_State = tuple[str, str, bool]


class LowerView:
    """The image's layer dirs (top first) as the container sees them below its upper dir.

    Each dir's states are computed from its parent's and kept, so a walk parents-first costs one
    lstat per entry and layer however deep the tree (a path walk from each layer's root would
    cost depth squared at 10,000 levels)."""

    def __init__(self, lowers: Sequence[Path]) -> None:
        self.lowers = [os.fspath(layer) for layer in lowers]
        # keyed by the dir's path below the root ("" for the root, "a/b"): a string hashes
        # fast where a 10,000-part tuple would not
        self._dirs: dict[str, list[_State]] = {"": [("dir", p, False) for p in self.lowers]}

    def _states(self, rel: str) -> list[_State]:
        """The states of the dir `rel` in every layer (its parents filled in first)."""
        missing = []
        while rel not in self._dirs:
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        for rel in reversed(missing):
            name = rel.rpartition("/")[2]
            self._dirs[rel] = [_child(state, name)[0] for state in self._dirs[rel.rpartition("/")[0]]]
        return self._dirs[rel]

    def stat(self, parts: Sequence[str]) -> os.stat_result | None:
        """lstat of a path as the layers show it; None when they do not."""
        return self.stat_rel("/".join(parts))

    def stat_rel(self, rel: str) -> os.stat_result | None:
        """lstat of the path `a/b` as the layers show it; None when they do not."""
        if not rel:
            return os.lstat(self.lowers[0]) if self.lowers else None
        parent, _, name = rel.rpartition("/")
        for state in self._states(parent):
            child, st = _child(state, name)
            if st is not None:
                return st
            if child[0] != "absent":
                return None
        return None

    def children(self, parts: Sequence[str]) -> list[str]:
        """The names the layers show inside a directory."""
        seen: dict[str, bool] = {}  # name -> visible (False: whited out by a higher layer)
        for kind, directory, _ in self._states("/".join(parts)):
            if kind == "absent":
                continue
            if kind != "dir":
                break
            with dirstack.shortened(directory) as short, os.scandir(short) as it:
                for entry in it:
                    st_child = entry.stat(follow_symlinks=False)
                    seen.setdefault(entry.name, not _is_whiteout(entry.path, st_child))
                if _is_opaque(short, os.lstat(short)):
                    break
        return sorted(name for name, visible in seen.items() if visible)


def _child(state: _State, name: str) -> tuple[_State, os.stat_result | None]:
    """The state of `name` in a dir of the given state, and its lstat when the layer shows it."""
    kind, path, opaque_above = state
    if kind in ("hidden", "other"):
        return ("hidden", "", True), None
    missing = ("hidden" if opaque_above else "absent", "", opaque_above)
    if kind == "absent":
        return missing, None
    child = os.path.join(path, name)
    with dirstack.shortened(child) as short:  # layer dirs 10,000 deep are past PATH_MAX
        try:
            st = os.lstat(short)
        except (FileNotFoundError, NotADirectoryError):
            return missing, None
        if _is_whiteout(short, st):
            return ("hidden", "", True), None
        if not stat.S_ISDIR(st.st_mode):  # a file or symlink here hides everything below
            return ("other", child, opaque_above), st
        return ("dir", child, opaque_above or _is_opaque(short, st)), st


def lower_stat(lowers: Sequence[Path], parts: Sequence[str]) -> os.stat_result | None:
    """lstat of a path as the image's layers (top first) show it; None when they do not."""
    return LowerView(lowers).stat(parts)


def lower_children(lowers: Sequence[Path], parts: Sequence[str]) -> list[str]:
    """The names the image's layers show inside a directory."""
    return LowerView(lowers).children(parts)


# -- the walk -------------------------------------------------------------------------------------


def _same_dir(upper: os.stat_result, lower: os.stat_result) -> bool:
    """docker's test for a directory copied up but not itself changed."""
    return (stat.S_ISDIR(lower.st_mode) and upper.st_size == lower.st_size
            and upper.st_mode == lower.st_mode and upper.st_mtime_ns == lower.st_mtime_ns)


def _names_at(entry: dirstack.Entry) -> set[str]:
    """The names in the upper dir `entry`, opened by fd (empty when it changed meanwhile)."""
    try:
        fd = dirstack.open_dir_at(entry.name, entry.dir_fd)
    except OSError as exc:
        if exc.errno in dirstack.GONE:
            return set()
        raise
    try:
        if os.fstat(fd).st_ino != entry.st.st_ino:
            return set()
        return set(os.listdir(fd))
    finally:
        os.close(fd)


def changes(upper: Path, lowers: Sequence[Path]) -> list[Change]:
    """What a container changed, from its upper dir and its image's layer dirs (top first).

    The upper dir is walked by fd only (dirstack): a running container swapping a dir for a
    symlink to a host dir never leads the walk out, and what vanishes meanwhile is left out."""
    found: dict[str, str] = {}
    changed_dirs: set[str] = set()
    view = LowerView(lowers)

    def parent_changed(path: str) -> None:
        parent = path.rpartition("/")[0] or "/"
        if parent != "/" and parent not in changed_dirs:
            found.setdefault(parent, "C")
            changed_dirs.add(parent)

    for entry in dirstack.walk(upper):
        st, path = entry.st, "/" + entry.rel
        host_path = dirstack.at(entry.dir_fd, entry.name)
        if _is_whiteout(host_path, st):
            found[path] = "D"
            parent_changed(path)
            continue
        below = view.stat_rel(entry.rel)
        if _is_opaque(host_path, st) and below is not None and stat.S_ISDIR(below.st_mode):
            present = _names_at(entry)
            for name in view.children(entry.rel.split("/")):
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
