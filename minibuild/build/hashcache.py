"""The hashes of context files, kept by stat: a file is read again only when its full stat
(device, inode, size, mtime, ctime) changed. Saved between builds (pipeline.py), so an unchanged
20,000-file COPY is not read again."""

from __future__ import annotations

import hashlib
import os
import time

from minibuild.build import fsstate
from minibuild.fs.longpath import LongPaths


class HashCache:
    """sha256 of files by path, trusted while the file's stat stays the same."""

    def __init__(self) -> None:
        # path -> (dev, ino, size, mtime_ns, ctime_ns, digest): re-hash only what changed.
        self._entries: dict[str, tuple[int, int, int, int, int, str]] = {}

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def to_json(self) -> dict[str, list]:
        """The cache as JSON-able data (path -> [dev, ino, size, mtime_ns, ctime_ns, hex])."""
        return {path: list(entry) for path, entry in self._entries.items()}

    def load(self, data: dict[str, list]) -> None:
        """Adopt a cache saved by an earlier build (malformed entries are dropped)."""
        for path, entry in data.items():
            if isinstance(entry, list) and len(entry) == 6:
                self._entries[path] = tuple(entry)  # type: ignore[assignment]

    def digest(self, path: str, paths: LongPaths | None = None) -> str:
        """sha256 hex of a file's bytes, read at most once while its stat stays the same;
        `paths` lets a path past PATH_MAX through."""
        dir_fd, rest = paths.split(path) if paths is not None else (None, path)
        st = os.stat(rest, dir_fd=dir_fd)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._entries.get(path)
        if cached is not None and cached[:5] == key:
            return cached[5]
        started = time.time_ns()
        with open(os.open(rest, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd), "rb") as f:
            before = os.fstat(f.fileno())
            hexdigest = hashlib.file_digest(f, "sha256").hexdigest()
            after = os.fstat(f.fileno())
        settled = fsstate.settled([after.st_mode, after.st_dev, after.st_ino, after.st_size,
                                   after.st_mtime_ns, after.st_ctime_ns], started)
        if settled and _same(before, after):
            self._entries[path] = (after.st_dev, after.st_ino, after.st_size,
                                   after.st_mtime_ns, after.st_ctime_ns, hexdigest)
        else:  # written within one timestamp tick, or while we read: could change unseen
            self._entries.pop(path, None)
        return hexdigest


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """True when a file did not change while it was being read."""
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)
