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
from minibuild.snapshot import CHUNK, Compression, write_layer


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
