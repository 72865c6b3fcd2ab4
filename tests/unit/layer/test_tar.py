"""The hand-written tar: headers tarfile reads back field for field, PAX only when needed, and the
output stream (DiffID, record padding, file bodies)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from minibuild.errors import LayerError
from minibuild.layer import tar
from minibuild.layer.compression import CHUNK, Compression, Compressor


def _read(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        return tf.getmembers()


def _entry(head: bytes) -> tarfile.TarInfo:
    """The one member a header (and its PAX prefix) describes."""
    [member] = _read(head + bytes(2 * tar.BLOCK))
    return member


def test_a_plain_header_is_one_ustar_block_that_tarfile_reads_back():
    head = tar.header(b"etc/passwd", 0o644, 0, 0, 1234, 1_700_000_000, b"0")
    assert len(head) == tar.BLOCK
    info = tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")  # checks the checksum
    assert (info.name, info.mode, info.uid, info.gid, info.size, info.mtime) == (
        "etc/passwd", 0o644, 0, 0, 1234, 1_700_000_000)
    assert info.uname == info.gname == "" and head[257:265] == b"ustar\x0000"


def test_links_and_devices_carry_their_fields():
    link = _entry(tar.header(b"bin/sh", 0o777, 0, 0, 0, 5, b"2", link=b"busybox"))
    assert link.issym() and link.linkname == "busybox"
    device = _entry(tar.header(b"dev/null", 0o666, 0, 0, 0, 5, b"3", major=1, minor=3))
    assert device.ischr() and (device.devmajor, device.devminor) == (1, 3)


@pytest.mark.parametrize("fields, record", [
    ({"name": b"d/" + b"n" * 120}, b"path="),
    ({"link": b"t" * 101, "kind": b"2"}, b"linkpath="),
    ({"uid": 3_000_000}, b"uid=3000000"),
    ({"gid": 0o10000000}, b"gid="),
    ({"mtime": -1}, b"mtime=-1"),
    ({"size": 0o100000000000}, b"size="),
])
def test_a_field_that_does_not_fit_goes_into_a_pax_record(fields, record):
    args = {"name": b"f", "mode": 0o644, "uid": 0, "gid": 0, "size": 0, "mtime": 0, "kind": b"0"}
    args.update(fields)
    head = tar.header(**args)
    assert record in head and len(head) % tar.BLOCK == 0
    if args["size"] == 0:  # a header promising 64 GiB has no body here to read back
        info = _entry(head)
        assert (info.name.encode(), info.uid, info.gid, info.mtime) == (
            args["name"], args["uid"], args["gid"], args["mtime"])


def test_a_short_utf8_header_has_no_pax_prefix():
    assert len(tar.header("é".encode() * 40, 0o644, 0, 0, 0, 0, b"0")) == tar.BLOCK


def test_a_long_name_that_is_not_utf8_is_marked_binary():
    name = b"\xff" * 120
    head = tar.header(name, 0o644, 0, 0, 0, 0, b"0")
    assert b"hdrcharset=BINARY" in head
    assert os.fsencode(_entry(head).name) == name


def test_xattrs_become_sorted_schily_records():
    head = tar.header(b"f", 0o644, 0, 0, 0, 0, b"0",
                      xattrs={"user.b": b"2", "security.capability": b"\x01\x00"})
    assert head.index(b"SCHILY.xattr.security.capability=") < head.index(b"SCHILY.xattr.user.b=")
    assert _entry(head).pax_headers["SCHILY.xattr.user.b"] == "2"


def _stream(write) -> tuple[bytes, tar.TarOut, object]:
    sink = io.BytesIO()
    out = tar.TarOut(Compressor(sink, Compression.NONE))
    write(out)
    diff_id = out.close()
    return sink.getvalue(), out, diff_id


@pytest.mark.parametrize("size", [0, 1, 600, CHUNK // 4 + 1, 2 * CHUNK + 7])
def test_file_entries_stream_their_bodies_with_padding(tmp_path, size):
    path = tmp_path / "f"
    body = os.urandom(size)
    path.write_bytes(body)
    fd = os.open(path, os.O_RDONLY)
    try:
        data, out, diff_id = _stream(lambda out: out.add_file(
            tar.header(b"f", 0o600, 0, 0, size, 0, b"0"), fd, bytes(path), size))
    finally:
        os.close(fd)
    assert len(data) % tar.RECORD == 0 and out.size == len(data)
    assert str(diff_id) == "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("f").read() == body


def test_a_file_that_shrank_since_its_stat_is_an_error(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"short")
    fd = os.open(path, os.O_RDONLY)
    sink = io.BytesIO()
    out = tar.TarOut(Compressor(sink, Compression.NONE))
    try:
        with pytest.raises(LayerError, match="shrank while it was being snapshotted"):
            out.add_file(tar.header(b"f", 0o600, 0, 0, 100, 0, b"0"), fd, bytes(path), 100)
    finally:
        out.abort()
        os.close(fd)


def test_an_empty_stream_is_the_end_of_archive_record():
    data, out, diff_id = _stream(lambda out: None)
    assert data == bytes(tar.RECORD) and _read(data) == []
