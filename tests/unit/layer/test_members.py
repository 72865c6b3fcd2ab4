"""members: a layer tar read as unpack sees it, names checked, whiteouts decoded, DiffID hashed."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from minibuild.errors import LayerError
from minibuild.layer import members
from minibuild.layer.whiteout import WhiteoutKind
from minibuild.oci import mediatypes


def _tar(*entries: tuple[str, bytes, bytes | str]) -> bytes:
    """A PAX tar of (name, type, body-or-linkname) entries, in the order given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(extra)
                tf.addfile(info, io.BytesIO(extra))
            else:
                info.linkname = extra if isinstance(extra, str) else ""
                tf.addfile(info)
    return raw.getvalue()


def _walk(blob: bytes, media_type: str = mediatypes.LAYER_TAR):
    seen = []
    digest, summary = members.walk_layer(
        io.BytesIO(blob), media_type, lambda tf, m, parts, wo: seen.append((m.name, parts, wo)))
    return seen, digest, summary


@pytest.mark.parametrize("name, parts", [
    ("a/b", ("a", "b")), ("./a//b/.", ("a", "b")), ("./", ()), ("a/", ("a",)),
])
def test_safe_parts_drops_dots_and_empty_components(name, parts):
    assert members.safe_parts(name) == parts


@pytest.mark.parametrize("name, message", [
    ("/etc/passwd", "is an absolute path"),
    ("a/../../etc", "climbs out of the layer"),
    ("a\0b", "contains a NUL byte"),
])
def test_safe_parts_refuses_names_that_could_leave_the_layer(name, message):
    with pytest.raises(LayerError, match=message):
        members.safe_parts(name)


def test_walk_yields_members_in_order_with_whiteouts_decoded_and_hashes_the_stream():
    blob = _tar(("./", tarfile.DIRTYPE, b""), ("etc/", tarfile.DIRTYPE, b""),
                ("etc/hosts", tarfile.REGTYPE, b"127.0.0.1 localhost\n"),
                ("etc/.wh.old", tarfile.REGTYPE, b""),
                ("var/.wh..wh..opq", tarfile.REGTYPE, b""),
                ("etc/hosts.bak", tarfile.LNKTYPE, "etc/hosts"))
    seen, digest, summary = _walk(blob)
    assert [name for name, _, _ in seen] == ["etc", "etc/hosts", "etc/.wh.old",
                                             "var/.wh..wh..opq", "etc/hosts.bak"]  # no "."
    assert seen[2][2].kind is WhiteoutKind.WHITEOUT and seen[2][2].path == "etc/old"
    assert seen[3][2].kind is WhiteoutKind.OPAQUE and seen[3][2].path == "var"
    assert str(digest) == "sha256:" + hashlib.sha256(blob).hexdigest()  # padding included
    assert summary.files == (("etc/hosts", 20), ("etc/hosts.bak", 20))
    assert summary.whiteouts == ("etc/old",) and summary.opaques == ("var",)
    assert summary.content_size == 20  # a hard link's body is counted once


def test_aufs_bookkeeping_is_skipped():
    seen, _, _ = _walk(_tar((".wh..wh.plnk/", tarfile.DIRTYPE, b""),
                            (".wh..wh.plnk/123.456", tarfile.REGTYPE, b"x"),
                            ("kept", tarfile.REGTYPE, b"")))
    assert [name for name, _, _ in seen] == ["kept"]


def test_a_later_entry_for_the_same_path_wins_in_the_summary():
    _, _, summary = _walk(_tar(("f", tarfile.REGTYPE, b"long body"), ("f", tarfile.REGTYPE, b"x")))
    assert summary.files == (("f", 1),) and summary.content_size == 1


def test_a_hard_link_climbing_out_of_the_layer_is_refused():
    with pytest.raises(LayerError, match="hardlink 'x': target"):
        _walk(_tar(("x", tarfile.LNKTYPE, "../../etc/shadow")))


def test_the_stream_is_decompressed_by_media_type():
    blob = _tar(("f", tarfile.REGTYPE, b"data"))
    _, digest, _ = _walk(gzip.compress(blob), mediatypes.LAYER_TAR_GZIP)
    assert str(digest) == "sha256:" + hashlib.sha256(blob).hexdigest()  # the DiffID: uncompressed


def test_an_unreadable_stream_is_a_layer_error():
    with pytest.raises(LayerError, match="not a readable .*tar\\+gzip tar"):
        _walk(b"\x1f\x8b" + bytes(100), mediatypes.LAYER_TAR_GZIP)


def test_an_os_error_while_applying_names_the_entry():
    def apply(tf, member, parts, wo):
        raise PermissionError(13, "Permission denied")

    with pytest.raises(LayerError, match="layer entry 'f' cannot be applied: .*Permission denied"):
        members.walk_layer(io.BytesIO(_tar(("f", tarfile.REGTYPE, b""))), mediatypes.LAYER_TAR, apply)


def test_kept_xattrs_drop_overlays_own():
    info = tarfile.TarInfo("f")
    info.pax_headers = {"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.opaque": "y",
                        "SCHILY.xattr.security.capability": "\x01", "mtime": "1.5"}
    assert members.kept_xattrs(info) == {"user.note": b"hi", "security.capability": b"\x01"}
