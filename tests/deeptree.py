"""Deep directory chains for the walk tests (10,000 levels: past PATH_MAX and the recursion
limit), made by fd since no path can name their bottom."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

DEEP = 10_000
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make_deep(base: Path, depth: int = DEEP, name: str = "d", bottom: bytes | None = b"x") -> None:
    """A chain of `depth` dirs `name` below `base` (made if missing), with a file `bottom` at the
    end holding `bottom`'s bytes (no file when None)."""
    os.makedirs(base, exist_ok=True)
    fd = os.open(base, _DIR)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = inner
        if bottom is not None:
            out = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(out, bottom)
            os.close(out)
    finally:
        os.close(fd)


def chain_depth(base: Path, name: str = "d") -> tuple[int, bytes | None]:
    """How deep the chain of `name` dirs below `base` goes, and the bottom file's bytes."""
    fd, depth = os.open(base, _DIR), 0
    try:
        while True:
            try:
                inner = os.open(name, _DIR, dir_fd=fd)
            except FileNotFoundError:
                break
            os.close(fd)
            fd, depth = inner, depth + 1
        try:
            out = os.open("bottom", os.O_RDONLY, dir_fd=fd)
        except FileNotFoundError:
            return depth, None
        with open(out, "rb") as f:
            return depth, f.read()
    finally:
        os.close(fd)


@pytest.fixture
def fast_tmp(tmp_path):
    """A temp dir on tmpfs when there is one: rmdir of deep chains costs ~2 ms a level on this
    disk (rm -rf alike) and 0.1 ms on tmpfs. Removed by minibuild's own remove_tree."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="mb-deep-"))
    try:
        yield path
    finally:
        from minibuild.fs.files import remove_tree

        remove_tree(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def deep_teardown(tmp_path):
    """After the test (passed or not), tmp_path's contents removed with minibuild's own walk:
    pytest's rmtree of old temp dirs hits RecursionError on a deep tree a failed test left
    (a container's upper dir, a store). Left alone while something is still mounted there."""
    yield
    from minibuild.fs.files import remove_tree

    with open("/proc/mounts") as mounts:
        if any(line.split()[1].startswith(str(tmp_path)) for line in mounts):
            return
    for child in list(tmp_path.iterdir()):
        remove_tree(child)

