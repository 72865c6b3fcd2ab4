"""Which user namespace we run in, and the uid/gid ranges it maps (rootless minibuild).

A rootless minibuild runs as uid 0 of a user namespace that maps 0 to the caller and 1..N to
the caller's subordinate range; every part of the code that must behave differently there
(overlay's `userxattr`, `user.overlay.*` opaque dirs, /dev made by binds) asks here. Only the
standard library is imported: the store's default path is decided at every start-up.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

# Set by the rootless bootstrap (minibuild.sandbox.userns) for the process it moved into the
# user namespace, and inherited by what it runs (`minibuild unshare`): "UID:GID" of the caller.
USERNS_ENV = "MINIBUILD_USERNS"
# The initial namespace maps every id to itself: "0 0 4294967295".
_IDENTITY = [(0, 0, 4294967295)]


class IdRange(NamedTuple):
    """One line of a uid_map/gid_map: `inside` ids start..start+count-1 are `outside` ids."""

    inside: int
    outside: int
    count: int

    def holds(self, some_id: int) -> bool:
        """Whether the inside id is in this range."""
        return self.inside <= some_id < self.inside + self.count


def parse_map(text: str) -> list[IdRange]:
    """The lines of a /proc/PID/uid_map (or gid_map) file."""
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            ranges.append(IdRange(*(int(f) for f in fields)))
    return ranges


def read_map(kind: str = "uid", pid: str = "self") -> list[IdRange]:
    """The uid (or gid) map of a process; the identity map when it cannot be read."""
    try:
        with open(f"/proc/{pid}/{kind}_map") as f:
            return parse_map(f.read())
    except OSError:
        return [IdRange(*r) for r in _IDENTITY]


@functools.cache
def in_user_namespace() -> bool:
    """True when this process runs in a user namespace other than the initial one."""
    return [tuple(r) for r in read_map("uid")] != _IDENTITY


def is_mapped(some_id: int, kind: str = "uid") -> bool:
    """Whether an id (as seen here) exists in this user namespace."""
    return any(r.holds(some_id) for r in read_map(kind))


def describe_map(kind: str = "uid") -> str:
    """The inside ids this namespace maps, for messages: `0-65536`."""
    spans: list[list[int]] = []
    for r in sorted(read_map(kind)):
        if spans and spans[-1][1] + 1 == r.inside:
            spans[-1][1] = r.inside + r.count - 1  # 0 (the caller) and 1..N read as one span
        else:
            spans.append([r.inside, r.inside + r.count - 1])
    return ", ".join(f"{a}-{b}" for a, b in spans)


def rootless() -> bool:
    """True in a process the rootless bootstrap moved into its user namespace (or below it)."""
    return bool(os.environ.get(USERNS_ENV))
