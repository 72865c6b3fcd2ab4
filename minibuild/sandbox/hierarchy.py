"""The cgroup hierarchies this machine mounts, and where minibuild's process sits in each.

Read once per process from /proc/self/mountinfo (cgroup and cgroup2 mounts, with the
controllers each v1 mount binds) and /proc/self/cgroup (our path in each hierarchy); the
parsing is pure, so tests feed it the text of other machines (hybrid, pure v2, cgroup ns).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and where minibuild's own process sits in it."""

    mount: Path
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: bound to it; v2: offered by its root
    own: str | None  # our cgroup's path inside the mount, or None when not under it
    root: str = "/"  # the cgroup the mount shows at its top (a bind of a sub-tree)

    def dir(self, path: str) -> Path:
        """The directory of a cgroup path inside the mount."""
        return self.mount / path.lstrip("/")

    def locate(self, path: str) -> Path | None:
        """The directory of a cgroup path as /proc/PID/cgroup gives it; None if not mounted."""
        inside = _inside(path, self.root)
        return None if inside is None else self.dir(inside)

    def member(self, names: str) -> bool:
        """Whether a /proc/PID/cgroup line's controller field names this hierarchy."""
        if self.version == 2:
            return names == ""
        bound = frozenset(n for n in names.split(",") if not n.startswith("name="))
        return bool(bound) and bound == self.controllers


def _unescape(text: str) -> str:
    """A mountinfo field: space, tab, newline and backslash come as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_hierarchies(mountinfo: str, proc_cgroup: str,
                      v2_controllers: Iterable[str] = ()) -> list[Hierarchy]:
    """The cgroup hierarchies of a mount table, with our place in each (pure: tests feed it)."""
    memberships = [line.split(":", 2) for line in proc_cgroup.splitlines() if line.count(":") >= 2]
    v1_lines = [(frozenset(names.split(",")), path) for _, names, path in memberships if names]
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 6:
            continue
        tail = line.split(" - ", 1)[1].split()
        fstype, options = tail[0], set(tail[2].split(",")) if len(tail) > 2 else set()
        root, mount = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup2":
            path = next((p for _, names, p in memberships if not names), None)
            found.append(Hierarchy(mount, 2, frozenset(v2_controllers), _inside(path, root), root))
        elif fstype == "cgroup":
            names, path = next(((n, p) for n, p in v1_lines if n <= options), (frozenset(), None))
            bound = frozenset(n for n in names if not n.startswith("name="))
            found.append(Hierarchy(mount, 1, bound, _inside(path, root), root))
    return found


def _inside(path: str | None, root: str) -> str | None:
    """Our cgroup path relative to the mount's root (a bind of a sub-tree, a cgroup ns)."""
    if path is None:
        return None
    if root == "/":
        return path
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")):] or "/"
    return None


@functools.cache
def hierarchies() -> tuple[Hierarchy, ...]:
    """This machine's cgroup hierarchies (read once per process)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        membership = Path("/proc/self/cgroup").read_text()
    except OSError:
        return ()
    v2 = []
    for h in parse_hierarchies(mountinfo, membership):
        if h.version == 2:
            try:
                v2 = (h.mount / "cgroup.controllers").read_text().split()
            except OSError:
                v2 = []
    return tuple(parse_hierarchies(mountinfo, membership, v2))
