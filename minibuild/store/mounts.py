"""Host-side mount bookkeeping: find and detach mounts left under a dead build's scratch dir.

Builds mount only inside a child's private mount namespace, which the kernel tears down when
the child dies; this is the belt to that brace (e.g. a store shared with an older minibuild).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

MNT_DETACH = 2
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mountinfo: str) -> list[str]:
    """The mount points listed in a /proc/self/mountinfo text."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def below(path: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them)."""
    base = str(path.resolve()) if path.exists() else str(path)
    found = [p for p in mount_points(mountinfo) if p == base or p.startswith(base + "/")]
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def detach_below(path: Path) -> list[str]:
    """Lazily unmount everything at or below `path`; return what was detached."""
    try:
        with open("/proc/self/mountinfo") as f:
            points = below(path, f.read())
    except OSError:
        return []
    if not points:
        return []
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    done = []
    for point in points:
        if libc.umount2(os.fsencode(point), MNT_DETACH) == 0:
            done.append(point)
    return done
