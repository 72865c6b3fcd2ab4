"""The threaded snapshot pipeline: same bytes as GNU tar sees, errors surface, no thread outlives a layer."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import threading
from pathlib import Path

import pytest
import zstandard

from minibuild.errors import LayerError
from minibuild.layer.compression import CHUNK, Compression
from minibuild.layer.snapshot import write_layer


def _tree(root: Path) -> Path:
    """Several CHUNKs of data (a big file, many small ones), so the pipeline threads start."""
    (root / "d").mkdir(parents=True)
    (root / "big").write_bytes(os.urandom(3 * CHUNK + 123))
    for i in range(300):
        (root / "d" / f"f{i:03d}").write_bytes(os.urandom(i * 37))
    return root


def _snapshot_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "minibuild-snapshot"]


class _FailingSink:
    """Accepts `good` writes, then fails like a full disk."""

    def __init__(self, good: int) -> None:
        self.left = good

    def write(self, data: bytes) -> int:
        if self.left == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= 1
        return len(data)


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
def test_tar_is_what_gnu_tar_reads_and_hashes_match(tmp_path: Path, compression: Compression) -> None:
    root = _tree(tmp_path / "up")
    sink = io.BytesIO()
    result = write_layer(root, sink, compression=compression)
    blob = sink.getvalue()
    tar = blob if compression is Compression.NONE else zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == str(result.diff_id)
    assert len(tar) == result.tar_size
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", "-", "-C", str(out)], input=tar, check=True)
    assert (out / "big").read_bytes() == (root / "big").read_bytes()
    assert (out / "d" / "f299").read_bytes() == (root / "d" / "f299").read_bytes()
    assert not _snapshot_threads()


@pytest.mark.parametrize("good", [0, 1, 3])
def test_sink_error_reaches_the_caller_and_threads_end(tmp_path: Path, good: int) -> None:
    root = _tree(tmp_path / "up")
    with pytest.raises(OSError) as info:
        write_layer(root, _FailingSink(good), compression=Compression.NONE)
    assert info.value.errno == errno.ENOSPC
    assert not _snapshot_threads()


def test_walker_error_stops_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "up")
    real_read = os.read
    big_reads = []

    def short_read(fd: int, n: int) -> bytes:
        if n >= CHUNK:
            big_reads.append(n)
            if len(big_reads) == 3:  # the pipeline threads run by now
                assert _snapshot_threads()
                return b""  # a big file that "shrank" after lstat
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", short_read)
    with pytest.raises(LayerError, match="shrank"):
        write_layer(root, io.BytesIO(), compression=Compression.ZSTD)
    assert not _snapshot_threads()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _odd_tree(root: Path) -> Path:
    """Files the descriptor-based path must treat exactly like the path-based one."""
    _tree(root)
    (root / "d" / "f001").rename(root / "d" / "hl-a")
    os.link(root / "d" / "hl-a", root / "d" / "hl-b")
    (root / "empty").write_bytes(b"")
    (root / ("\xff" * 100).encode("latin-1").decode("utf-8", "surrogateescape")).write_bytes(b"x")
    (root / ("n" * 150)).write_bytes(b"long name")  # PAX path
    xa = root / "xa"
    xa.write_bytes(b"xattrs")
    try:
        os.setxattr(xa, "user.k", b"v")
    except OSError:  # a filesystem without user xattrs: still a useful tree
        pass
    return root


def test_fd_path_and_path_fallback_give_the_same_bytes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = _odd_tree(tmp_path / "up")
    fast = io.BytesIO()
    fast_result = write_layer(root, fast, compression=Compression.NONE)
    real_open = os.open

    def refuse_relative(path, flags, mode=0o777, *, dir_fd=None):  # noqa: ANN001 - os.open's shape
        if dir_fd is not None and not flags & os.O_DIRECTORY:
            raise PermissionError(13, "refused by the test")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse_relative)
    slow = io.BytesIO()
    slow_result = write_layer(root, slow, compression=Compression.NONE)
    assert fast.getvalue() == slow.getvalue()
    assert fast_result == slow_result


def test_header_checksums_hold_for_the_largest_byte_sums(tmp_path: Path) -> None:
    root = _odd_tree(tmp_path / "up")
    sink = io.BytesIO()
    write_layer(root, sink, compression=Compression.NONE)
    tar = sink.getvalue()
    listed = subprocess.run(["tar", "--quoting-style=literal", "-tf", "-"], input=tar,
                            capture_output=True, check=True).stdout
    assert b"\xff" * 100 + b"\n" in listed
    assert b"n" * 150 + b"\n" in listed


def test_deep_tree_keeps_few_dir_descriptors(tmp_path: Path) -> None:
    root = tmp_path / "up"
    deep = root
    for i in range(120):
        deep = deep / f"{i}"
        (deep / "sub").mkdir(parents=True)
        (deep / "file").write_bytes(b"%d" % i)
    before = _open_fds()
    most = [before]

    class CountingSink(io.BytesIO):
        def write(self, data: bytes) -> int:
            most.append(_open_fds())
            return super().write(data)

    sink = CountingSink()
    write_layer(root, sink, compression=Compression.NONE)
    assert max(most) < before + 50  # not one per level
    assert _open_fds() == before
    listed = subprocess.run(["tar", "-tf", "-"], input=sink.getvalue(), capture_output=True,
                            check=True).stdout.splitlines()
    assert len(listed) == 120 * 3
    assert listed[:4] == [b"0/", b"0/1/", b"0/1/2/", b"0/1/2/3/"]  # parents first
    assert listed[-2:] == [b"0/file", b"0/sub/"]  # bytes order within a dir


def test_errors_leave_no_descriptor_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "up")
    before = _open_fds()
    with pytest.raises(OSError):
        write_layer(root, _FailingSink(1), compression=Compression.NONE)
    assert _open_fds() == before
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, n)[:-1] if n == 99 * 37 else real_read(fd, n))
    with pytest.raises(LayerError, match="shrank"):
        write_layer(root, io.BytesIO(), compression=Compression.NONE)
    assert _open_fds() == before
    assert not _snapshot_threads()
