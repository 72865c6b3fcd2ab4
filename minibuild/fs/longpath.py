"""Paths of any length for the *at calls: a path past PATH_MAX (a context dir 10,000 levels deep)
is handed to the kernel as (dir_fd, short rest), the fd an O_PATH one on an ancestor.

`LongPaths` keeps those ancestor fds (one every ~SHORT bytes of path) between calls, so a walk
going down or back up a deep tree opens each chunk once instead of the whole path per call. The
chunks are resolved by the kernel as one path would be (links in them followed alike): for trees
no one changes meanwhile (the copier's source and destination), not for a running container's.
"""

from __future__ import annotations

import errno
import os

SHORT = 3800  # bytes of a path handed to the kernel at once (PATH_MAX is 4096)
_PLAIN = SHORT // 4  # chars: a str this short is under SHORT bytes whatever it holds
_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class LongPaths:
    """Splits paths into (dir_fd, rest) for the *at calls; dir_fd None for a short path."""

    def __init__(self) -> None:
        self._pins: list[tuple[bytes, int]] = []  # (prefix ending in "/", O_PATH fd on it)

    def __enter__(self) -> LongPaths:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def split(self, path: str) -> tuple[int | None, str]:
        """`path` as (dir_fd, rest): the same entry, `rest` short enough for the kernel."""
        if len(path) < _PLAIN:
            return None, path
        raw = os.fsencode(path)
        if len(raw) < SHORT:
            return None, path
        fd, rest = self._pinned(raw)
        return fd, os.fsdecode(rest)

    def _pinned(self, raw: bytes) -> tuple[int | None, bytes]:
        """Drop the pins `raw` is not below, then pin chunks until the rest is short."""
        pins = self._pins
        while pins and not raw.startswith(pins[-1][0]):
            os.close(pins.pop()[1])
        base, fd = pins[-1] if pins else (b"", None)
        rest = raw[len(base):]
        while len(rest) >= SHORT:
            cut = rest.rfind(b"/", 1, SHORT)
            if cut < 0:
                raise OSError(errno.ENAMETOOLONG, "File name too long", os.fsdecode(raw))
            fd = os.open(rest[:cut], _FLAGS, dir_fd=fd)
            base += rest[:cut + 1]
            pins.append((base, fd))
            rest = rest[cut + 1:]
        return fd, rest

    def close(self) -> None:
        """Close every pinned fd."""
        while self._pins:
            os.close(self._pins.pop()[1])
