"""Snapshot of a plain dir tree: tar contents, determinism, compression, summary."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from minibuild.oci.digest import Digest
from minibuild.errors import LayerError
from minibuild.layer.compression import CHUNK, Compression
from minibuild.layer.snapshot import LayerSummary, is_empty, write_layer
from minibuild.layer.unpack import summarize_layer
from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture

T0 = 1_600_000_000  # a fixed mtime for every fixture entry


def build_tree(root: Path) -> Path:
    """files, dirs, symlink, hardlink pair, fifo, setuid file, user xattr, a big file."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/hosts").write_bytes(b"127.0.0.1 localhost\n")
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool2")
    os.symlink("tool", root / "usr/bin/link")
    os.mkfifo(root / "pipe", 0o600)
    (root / "big").write_bytes(bytes(range(256)) * (CHUNK * 5 // 2 // 256 + 3))
    os.setxattr(root / "etc/hosts", "user.foo", b"bar")
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        os.utime(path, (T0, T0), follow_symlinks=False)
    return root


def snap(upper: Path, compression=Compression.NONE, **kw) -> tuple[bytes, object]:
    sink = io.BytesIO()
    result = write_layer(upper, sink, compression=compression, **kw)
    return sink.getvalue(), result


EXPECTED = [  # name, type, mode, linkname
    ("big", tarfile.REGTYPE, 0o644, ""),
    ("etc", tarfile.DIRTYPE, 0o755, ""),
    ("etc/hosts", tarfile.REGTYPE, 0o644, ""),
    ("pipe", tarfile.FIFOTYPE, 0o600, ""),
    ("usr", tarfile.DIRTYPE, 0o755, ""),
    ("usr/bin", tarfile.DIRTYPE, 0o755, ""),
    ("usr/bin/link", tarfile.SYMTYPE, 0o777, "tool"),
    ("usr/bin/tool", tarfile.REGTYPE, 0o4755, ""),
    ("usr/bin/tool2", tarfile.LNKTYPE, 0o4755, "usr/bin/tool"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    os.umask(0o022)
    return build_tree(tmp_path / "upper")


def test_tar_entries_read_back_with_tarfile(tree: Path):
    data, result = snap(tree)
    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    got = [(m.name, m.type, m.mode, m.linkname) for m in members]
    assert got == EXPECTED
    by_name = {m.name: m for m in members}
    assert by_name["etc/hosts"].pax_headers == {"SCHILY.xattr.user.foo": "bar"}
    assert all(m.mtime == T0 and m.uname == "" and m.gname == "" for m in members)
    assert all(m.pax_headers == {} for m in members if m.name != "etc/hosts")
    tf = tarfile.open(fileobj=io.BytesIO(data))
    assert tf.extractfile("big").read() == (tree / "big").read_bytes()
    assert tf.extractfile("usr/bin/tool").read() == b"#!/bin/sh\necho hi\n"


def test_tar_names_as_gnu_tar_lists_them(tree: Path, tmp_path: Path):
    if shutil.which("tar") is None:
        pytest.skip("GNU tar not installed")
    data, _ = snap(tree)
    (tmp_path / "l.tar").write_bytes(data)
    out = subprocess.run(["tar", "-tvf", str(tmp_path / "l.tar")], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    names = [line.split(maxsplit=5)[5] for line in out]
    assert names == ["big", "etc/", "etc/hosts", "pipe", "usr/", "usr/bin/",
                     "usr/bin/link -> tool", "usr/bin/tool", "usr/bin/tool2 link to usr/bin/tool"]
    assert [line[:10] for line in out] == ["-rw-r--r--", "drwxr-xr-x", "-rw-r--r--", "prw-------",
                                           "drwxr-xr-x", "drwxr-xr-x", "lrwxrwxrwx", "-rwsr-xr-x",
                                           "hrwsr-xr-x"]


def test_summary(tree: Path):
    _, result = snap(tree)
    size_big = (tree / "big").stat().st_size
    assert result.summary == LayerSummary(
        files=(("big", size_big), ("etc/hosts", 20), ("pipe", 0), ("usr/bin/link", 0),
               ("usr/bin/tool", 18), ("usr/bin/tool2", 18)),
        whiteouts=(), opaques=(), content_size=size_big + 20 + 18)
    assert LayerSummary.from_json(result.summary.to_json()) == result.summary
    assert result.empty is False and result.media_type.endswith(".tar")


def test_summary_matches_a_read_only_pass(tree: Path):
    data, result = snap(tree, Compression.ZSTD)
    diff_id, summary = summarize_layer(io.BytesIO(data), result.media_type)
    assert (diff_id, summary) == (result.diff_id, result.summary)


def test_same_content_same_bytes_and_clamp_hides_newer_mtimes(tree: Path):
    first, r1 = snap(tree, clamp_mtime=T0)
    second, r2 = snap(tree, clamp_mtime=T0)
    assert first == second and r1.diff_id == r2.diff_id
    os.utime(tree / "etc/hosts", (T0 + 500, T0 + 500))
    _, clamped = snap(tree, clamp_mtime=T0)
    _, unclamped = snap(tree)
    assert clamped.diff_id == r1.diff_id
    assert unclamped.diff_id != r1.diff_id  # without the clamp the mtime does show


def test_content_change_changes_diff_id(tree: Path):
    _, before = snap(tree)
    (tree / "etc/hosts").write_bytes(b"127.0.0.2 localhost\n")
    os.utime(tree / "etc/hosts", (T0, T0))
    _, after = snap(tree)
    assert before.diff_id != after.diff_id


@pytest.mark.parametrize("compression", [c for c in Compression if c is not Compression.ZSTD_CHUNKED])
def test_diff_id_is_sha256_of_the_decompressed_stream(tree: Path, compression):
    blob, result = snap(tree, compression)
    if compression is Compression.ZSTD:
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    elif compression is Compression.GZIP:
        raw = gzip.decompress(blob)
    else:
        raw = blob
    assert Digest.of(raw) == result.diff_id
    assert len(raw) == result.tar_size and len(raw) % 512 == 0
    assert result.media_type == compression.media_type


def test_gzip_header_has_no_time_or_name(tree: Path):
    blob, _ = snap(tree, Compression.GZIP)
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # FNAME flag unset
    assert blob[4:8] == b"\0\0\0\0"  # MTIME
    assert snap(tree, Compression.GZIP)[0] == blob


def test_zstd_blob_decompresses_with_the_cli(tree: Path, tmp_path: Path):
    if shutil.which("zstd") is None:
        pytest.skip("zstd CLI not installed")
    blob, result = snap(tree, Compression.ZSTD)
    assert snap(tree, Compression.ZSTD)[0] == blob
    (tmp_path / "l.tar.zst").write_bytes(blob)
    raw = subprocess.run(["zstd", "-dc", str(tmp_path / "l.tar.zst")], capture_output=True,
                         check=True).stdout
    assert hashlib.sha256(raw).hexdigest() == result.diff_id.hex


def test_real_file_named_like_a_whiteout_is_refused(tmp_path: Path):
    (tmp_path / "up/etc").mkdir(parents=True)
    (tmp_path / "up/etc/.wh.foo").write_bytes(b"")
    with pytest.raises(LayerError, match=r"etc/\.wh\.foo"):
        snap(tmp_path / "up")


def test_empty_upper(tmp_path: Path):
    (tmp_path / "up").mkdir()
    assert is_empty(tmp_path / "up")
    data, result = snap(tmp_path / "up")
    assert result.empty and data == bytes(10240)
    (tmp_path / "up/d").mkdir()
    assert not is_empty(tmp_path / "up")
    assert snap(tmp_path / "up")[1].empty is False


def test_long_names_and_big_ids_use_pax(tmp_path: Path):
    deep = tmp_path / "up" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"x")
    os.symlink("t" * 150, deep / "sym")
    if os.geteuid() == 0:
        os.chown(deep / "file", 3_000_000, 5)
    data, _ = snap(tmp_path / "up")
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    prefix = f"{'d' * 60}/{'e' * 60}"
    assert members[f"{prefix}/sym"].linkname == "t" * 150
    assert members[f"{prefix}/file"].size == 1
    if os.geteuid() == 0:
        assert members[f"{prefix}/file"].uid == 3_000_000


def test_compression_parse():
    assert Compression.parse("ZSTD") is Compression.ZSTD
    assert Compression.GZIP.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert Compression.NONE.media_type == "application/vnd.oci.image.layer.v1.tar"
    with pytest.raises(LayerError):
        Compression.parse("lz4")


def test_10000_levels_deep(fast_tmp):
    make_deep(fast_tmp / "upper")
    _, result = snap(fast_tmp / "upper")  # (tarfile takes seconds to read 10,000 PAX names)
    assert result.summary.files == (("/".join(["d"] * DEEP) + "/bottom", 1),)
    assert not result.empty


def test_a_link_to_a_host_dir_is_stored_as_a_link(tmp_path):
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "marker").write_text("secret")
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "swap").symlink_to(tmp_path / "host")
    data, _ = snap(tmp_path / "upper")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert [(m.name, m.issym()) for m in tf.getmembers()] == [("swap", True)]
