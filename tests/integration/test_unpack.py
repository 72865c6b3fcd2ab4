"""Unpack: overlay lower format, duplicate/order rules, and hostile tars that must be refused."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minibuild.oci.digest import Digest
from minibuild.errors import LayerError
from minibuild.layer.compression import open_uncompressed
from minibuild.layer.unpack import summarize_layer, unpack_layer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, trusted.* xattrs, chown)"),
]

PLAIN = "application/vnd.oci.image.layer.v1.tar"


def entry(name: str, kind=tarfile.REGTYPE, data: bytes = b"", **attrs) -> tuple:
    return name, kind, data, attrs


def make_tar(*entries: tuple) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, attrs in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            info.mtime = attrs.pop("mtime", 1_600_000_000)
            for key, value in attrs.items():
                setattr(info, key, value)
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def unpack(tmp_path: Path, data: bytes, media_type: str = PLAIN) -> Path:
    target = tmp_path / "box" / "target"
    target.mkdir(parents=True)
    unpack_layer(io.BytesIO(data), media_type, target)
    return target


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_whiteouts_become_devices_and_opaque_xattrs_wherever_they_stand(tmp_path: Path):
    data = make_tar(
        entry("etc/.wh..wh..opq"),  # before its dir entry
        entry("etc", tarfile.DIRTYPE, mode=0o700),
        entry("etc/hosts", data=b"h\n"),
        entry("usr/.wh.gone"),
        entry(".wh.top"),
    )
    target = unpack(tmp_path, data)
    assert os.getxattr(target / "etc", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE((target / "etc").stat().st_mode) == 0o700
    assert is_whiteout(target / "usr/gone") and is_whiteout(target / "top")
    assert not (target / "usr/.wh.gone").exists()
    assert (target / "etc/hosts").read_bytes() == b"h\n"


def test_whiteout_then_recreate_in_one_layer_makes_an_opaque_dir(tmp_path: Path):
    target = unpack(tmp_path, make_tar(entry(".wh.x"), entry("x/new", data=b"n")))
    assert (target / "x").is_dir() and (target / "x/new").read_bytes() == b"n"
    assert os.getxattr(target / "x", "trusted.overlay.opaque") == b"y"
    target2 = unpack(tmp_path / "2", make_tar(entry("y", data=b"file"), entry(".wh.y")))
    assert (target2 / "y").read_bytes() == b"file"  # the whiteout only hides lower layers


def test_duplicates_dir_over_dir_keeps_children_anything_else_replaces(tmp_path: Path):
    data = make_tar(
        entry("d", tarfile.DIRTYPE, mode=0o755),
        entry("d/child", data=b"c"),
        entry("d", tarfile.DIRTYPE, mode=0o711, uid=5, gid=6),
        entry("f", data=b"first"),
        entry("f", tarfile.SYMTYPE, linkname="d"),
        entry("e", tarfile.DIRTYPE),
        entry("e/x", data=b"x"),
        entry("e", data=b"now a file"),
    )
    target = unpack(tmp_path, data)
    st = (target / "d").stat()
    assert (target / "d/child").read_bytes() == b"c"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o711, 5, 6)
    assert os.readlink(target / "f") == "d"
    assert (target / "e").read_bytes() == b"now a file"


def test_attributes_links_devices_xattrs(tmp_path: Path):
    data = make_tar(
        entry("bin", tarfile.DIRTYPE, mtime=1_500_000_000),
        entry("bin/su", data=b"su", mode=0o4755, uid=0, gid=0, pax_headers={
            "SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        entry("bin/su2", tarfile.LNKTYPE, linkname="bin/su"),
        entry("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox", uid=7, gid=7),
        entry("dev", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        entry("dev/fifo", tarfile.FIFOTYPE, mode=0o600),
        entry("owned", data=b"o", uid=1234, gid=4321, mtime=1_400_000_000),
    )
    target = unpack(tmp_path, data)
    su = (target / "bin/su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_nlink == 2
    assert (target / "bin/su2").stat().st_ino == su.st_ino
    assert os.getxattr(target / "bin/su", "user.note") == b"hello"
    assert os.readlink(target / "bin/sh") == "/bin/busybox"
    assert (target / "bin/sh").lstat().st_uid == 7
    assert (target / "bin").stat().st_mtime == 1_500_000_000  # set after its children
    null = (target / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_ISFIFO((target / "dev/fifo").lstat().st_mode)
    owned = (target / "owned").stat()
    assert (owned.st_uid, owned.st_gid, owned.st_mtime) == (1234, 4321, 1_400_000_000)
    for p in ("bin/su", "dev"):  # a layer never injects overlay's own state
        assert "trusted.overlay.opaque" not in os.listxattr(target / p)


def test_diff_id_and_compressions(tmp_path: Path):
    raw = make_tar(entry("a", data=b"a" * 5000), entry("b", tarfile.DIRTYPE))
    gz = gzip.compress(raw, mtime=0)
    for i, (blob, media_type) in enumerate([
            (raw, PLAIN), (gz, PLAIN + "+gzip"),
            (gz, "application/vnd.docker.image.rootfs.diff.tar.gzip")]):
        target = tmp_path / str(i)
        target.mkdir()
        diff_id, summary = unpack_layer(io.BytesIO(blob), media_type, target)
        assert diff_id == Digest.of(raw)  # the whole stream, end padding included
        assert summary.files == (("a", 5000),) and summary.content_size == 5000
    assert summarize_layer(io.BytesIO(gz), PLAIN + "+gzip")[0] == Digest.of(raw)
    with pytest.raises(LayerError, match="media type"):
        open_uncompressed(io.BytesIO(raw), "application/x-rar")
    (tmp_path / "3").mkdir()
    with pytest.raises(LayerError, match="not a readable"):
        unpack_layer(io.BytesIO(raw), PLAIN + "+gzip", tmp_path / "3")


def test_target_must_be_empty(tmp_path: Path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(LayerError, match="not empty"):
        unpack_layer(io.BytesIO(make_tar(entry("a"))), PLAIN, tmp_path)


HOSTILE = {
    "dotdot": [entry("../x", data=b"evil")],
    "dotdot-inside": [entry("a/../../x", data=b"evil")],
    "absolute": [entry("/abs", data=b"evil")],
    "through-symlink": [entry("a", tarfile.SYMTYPE, linkname="/"), entry("a/etc/passwd", data=b"evil")],
    "through-relative-symlink": [entry("a", tarfile.SYMTYPE, linkname=".."), entry("a/x", data=b"evil")],
    "hardlink-climbs": [entry("h", tarfile.LNKTYPE, linkname="../../x")],
    "hardlink-absolute": [entry("h", tarfile.LNKTYPE, linkname="/etc/passwd")],
    "hardlink-missing": [entry("h", tarfile.LNKTYPE, linkname="nothere")],
    "hardlink-via-symlink": [entry("s", tarfile.SYMTYPE, linkname="/etc"),
                             entry("h", tarfile.LNKTYPE, linkname="s/passwd")],
    "whiteout-climbs": [entry(".wh...")],
    "whiteout-bare": [entry("d/.wh.")],
    "whiteout-as-dir": [entry(".wh.d/x", data=b"x")],
    "raw-overlay-whiteout": [entry("c", tarfile.CHRTYPE, devmajor=0, devminor=0)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tars_are_refused_and_nothing_lands_outside(tmp_path: Path, case: str):
    outside = tmp_path / "box"
    outside.mkdir()
    (outside / "x").write_text("original")
    target = outside / "target"
    target.mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    passwd = Path("/etc/passwd").read_bytes()
    with pytest.raises(LayerError) as err:
        unpack_layer(io.BytesIO(make_tar(*HOSTILE[case])), PLAIN, target)
    assert repr(HOSTILE[case][-1][0]) in str(err.value)  # the message names the entry
    after = sorted(str(p) for p in tmp_path.rglob("*") if not str(p).startswith(str(target) + "/"))
    assert after == before
    assert (outside / "x").read_text() == "original"
    assert Path("/etc/passwd").read_bytes() == passwd


@pytest.mark.parametrize("case", ["dotdot", "dotdot-inside", "absolute", "hardlink-climbs",
                                  "hardlink-absolute", "whiteout-climbs", "whiteout-bare",
                                  "whiteout-as-dir"])
def test_summarize_refuses_bad_names_too(case: str):
    with pytest.raises(LayerError):
        summarize_layer(io.BytesIO(make_tar(*HOSTILE[case])), PLAIN)
