"""zstd:chunked: plain zstd to any decoder, a TOC whose offsets fetch each file alone, tar-split
that rebuilds the tar byte for byte, a footer and annotations that agree."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest
import zstandard

from minibuild.errors import LayerError
from minibuild.layer import zstdchunked


def make_tar(path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, kind=tarfile.REGTYPE, data=b"", **fields):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mtime, info.mode = kind, len(data), 1700000000, fields.pop("mode", 0o644)
            for key, value in fields.items():
                setattr(info, key, value)
            tf.addfile(info, io.BytesIO(data) if data else None)
        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/big", data=bytes(range(256)) * 3000, mode=0o4755, uid=7, gid=8)
        add("etc/empty")
        add("etc/caps", data=b"x", pax_headers={"SCHILY.xattr.security.capability": "\x01\x02"})
        add("etc/link", tarfile.SYMTYPE, linkname="big")
        add("etc/hard", tarfile.LNKTYPE, linkname="etc/big")
        add("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("etc/.wh.gone")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_crc64_is_gos_iso_table():
    assert zstdchunked.crc64_update(0, b"123456789") == 0xB90956C775A41001  # CRC-64/GO-ISO's check value
    assert zstdchunked.crc64_update(zstdchunked.crc64_update(0, b"1234"), b"56789") == 0xB90956C775A41001


def test_a_chunked_layer_is_plain_zstd_with_a_toc_and_tar_split(tmp_path):
    tar = make_tar(tmp_path / "layer.tar")
    out = io.BytesIO()
    diff_id, annotations = zstdchunked.write(tmp_path / "layer.tar", out)
    data = out.getvalue()
    assert str(diff_id) == f"sha256:{hashlib.sha256(tar).hexdigest()}"
    assert zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(data) == tar
    notes = dict(annotations)
    toc_offset, toc_len, toc_raw, kind = map(int, notes[zstdchunked.MANIFEST_KEY].split(":"))
    split_offset, split_len, split_raw = map(int, notes[zstdchunked.TARSPLIT_KEY].split(":"))
    footer = data[-64:]
    assert footer[56:] == zstdchunked.FOOTER_MAGIC and data[-72:-68] == b"\x50\x2a\x4d\x18"
    assert [int.from_bytes(footer[i:i + 8], "little") for i in range(0, 56, 8)] == \
        [toc_offset, toc_len, toc_raw, kind, split_offset, split_len, split_raw]
    toc_blob = data[toc_offset:toc_offset + toc_len]
    assert notes[zstdchunked.CHECKSUM_KEY] == f"sha256:{hashlib.sha256(toc_blob).hexdigest()}"
    toc = json.loads(zstandard.ZstdDecompressor().decompress(toc_blob))
    entries = {e["name"]: e for e in toc["entries"]}
    assert list(entries) == ["etc/", "etc/big", "etc/empty", "etc/caps", "etc/link", "etc/hard", "dev-null", "etc/.wh.gone"]
    big = entries["etc/big"]
    assert (big["type"], big["mode"], big["uid"], big["gid"], big["size"]) == ("reg", 0o4755, 7, 8, 768000)
    assert big["modtime"] == "2023-11-14T22:13:20Z"
    alone = zstandard.ZstdDecompressor().decompressobj().decompress(data[big["offset"]:big["endOffset"]])
    assert big["digest"] == f"sha256:{hashlib.sha256(alone).hexdigest()}" and alone == bytes(range(256)) * 3000
    assert entries["etc/caps"]["xattrs"] == {"security.capability": base64.b64encode(b"\x01\x02").decode()}
    assert entries["etc/link"] == {"type": "symlink", "name": "etc/link", "linkName": "big", "mode": 0o644,
                                   "modtime": "2023-11-14T22:13:20Z"}
    assert entries["etc/hard"]["type"] == "hardlink" and entries["etc/hard"]["linkName"] == "etc/big"
    assert (entries["dev-null"]["devMajor"], entries["dev-null"]["devMinor"]) == (1, 3)
    assert "digest" not in entries["etc/empty"] and "offset" not in entries["etc/empty"]

    split_blob = data[split_offset:split_offset + split_len]
    assert toc["tarSplitDigest"] == f"sha256:{hashlib.sha256(split_blob).hexdigest()}"
    rebuilt = b""
    for line in zstandard.ZstdDecompressor().decompress(split_blob).splitlines():
        item = json.loads(line)
        if item["type"] == 2:
            rebuilt += base64.b64decode(item["payload"])
        elif item.get("size"):
            contents = alone if item["name"] == "etc/big" else b"x"
            assert base64.b64decode(item["payload"]) == zstdchunked.crc64_update(0, contents).to_bytes(8, "big")
            rebuilt += contents
        else:
            assert item["payload"] is None
    assert rebuilt == tar


def test_the_same_tar_gives_the_same_blob(tmp_path):
    make_tar(tmp_path / "layer.tar")
    first, second = io.BytesIO(), io.BytesIO()
    assert zstdchunked.write(tmp_path / "layer.tar", first) == zstdchunked.write(tmp_path / "layer.tar", second)
    assert first.getvalue() == second.getvalue()


def test_a_tar_entry_the_format_cannot_name_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("vol")
        info.type = tarfile.GNUTYPE_SPARSE
        tf.addfile(info)
    (tmp_path / "odd.tar").write_bytes(buf.getvalue())
    with pytest.raises(LayerError, match="zstd:chunked"):
        zstdchunked.write(tmp_path / "odd.tar", io.BytesIO())


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 9, 1000])
def test_crc64_in_pieces_of_any_length(cut):
    data = bytes(range(256)) * 5 + b"tail"
    whole = zstdchunked.crc64_update(0, data)
    assert zstdchunked.crc64_update(zstdchunked.crc64_update(0, data[:cut]), data[cut:]) == whole
    crc = 0  # the byte-at-a-time definition agrees
    table = zstdchunked._CRC64[0]
    crc ^= 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    assert crc ^ 0xFFFFFFFFFFFFFFFF == whole


def test_directory_names_keep_their_spelling(tmp_path):
    """tarfile strips a directory's trailing slash; the TOC and tar-split keep what the tar says."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("a", "b/"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
    data = bytearray(buf.getvalue())
    data[0:100] = b"a".ljust(100, b"\0")  # tarfile wrote "a/": make it slash-less, as some tools do
    data[148:156] = b"        "
    data[148:155] = f"{sum(data[0:512]):06o}\0".encode()
    (tmp_path / "dirs.tar").write_bytes(bytes(data))
    out = io.BytesIO()
    _, annotations = zstdchunked.write(tmp_path / "dirs.tar", out)
    offset, length, _, _ = map(int, dict(annotations)[zstdchunked.MANIFEST_KEY].split(":"))
    toc = json.loads(zstandard.ZstdDecompressor().decompress(out.getvalue()[offset:offset + length]))
    assert [e["name"] for e in toc["entries"]] == ["a", "b/"]
