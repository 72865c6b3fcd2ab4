"""File locks: flock(2) on a file, shared or exclusive, waiting or not.

A lock lives as long as its open file, so a process that dies (crash, SIGKILL) lets go of it:
the kernel's bookkeeping, not a pid file, says who holds what. Only os and fcntl are imported:
the build memo takes the store's gc lock before anything heavy is loaded.
"""

from __future__ import annotations

import fcntl
import os


def flock(fd: int, *, exclusive: bool = True, wait: bool = True) -> None:
    """Lock an open file; BlockingIOError when `wait` is False and a conflicting lock is held."""
    flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    fcntl.flock(fd, flags if wait else flags | fcntl.LOCK_NB)


class FileLock:
    """A flock on a file, held until `release()` (or the process ends); also a context manager.

    The file is created (mode 0600) when missing; with `create=False` it is opened read-only
    and FileNotFoundError says it is not there. BlockingIOError when `wait` is False and the
    lock is taken (the file is closed again).
    """

    def __init__(self, path: str | os.PathLike, *, exclusive: bool = True, wait: bool = True,
                 create: bool = True) -> None:
        mode = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        self.fd: int | None = os.open(path, mode | os.O_CLOEXEC, 0o600)
        try:
            flock(self.fd, exclusive=exclusive, wait=wait)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    @property
    def held(self) -> bool:
        """Whether the lock is still held (not released)."""
        return self.fd is not None

    def convert(self, *, exclusive: bool) -> None:
        """Turn the lock shared or exclusive without waiting; BlockingIOError when another
        holder conflicts, with the old lock taken back."""
        assert self.fd is not None, "the lock was released"
        try:
            flock(self.fd, exclusive=exclusive, wait=False)
        except BlockingIOError:
            # flock converts by dropping the old lock first: take it back before saying no
            flock(self.fd, exclusive=not exclusive)
            raise

    def release(self) -> None:
        """Drop the lock (closing its file); a second call does nothing."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
