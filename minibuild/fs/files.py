"""Whole files and trees: write a small file atomically, remove a tree whatever its modes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from minibuild.fs import dirstack


def temp_name(path: Path) -> Path:
    """Where `write_atomic` stages `path`: `.NAME.PID.RANDOM` beside it (fsck knows the form)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


def write_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o666) -> None:
    """Write a small file by temp + rename in its dir, so readers never see half of it.

    durable=False skips the fsync, for files whose loss or damage after a power cut only
    costs time (cache entries and summaries: unreadable ones are recomputed). `mode` is that
    of a new file, before the umask (0o600 for credentials: never readable by others, even
    for a moment).
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with open(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_tree(path: Path | str | bytes, *, ignore_errors: bool = False) -> None:
    """rm -rf at any depth (fd-based, iterative) that also copes with overlay's mode-000 work
    dirs; a missing path is fine. `ignore_errors` for best-effort cleanup in a finally."""
    try:
        dirstack.remove_at(None, os.fspath(path))
    except OSError:
        if not ignore_errors:
            raise
