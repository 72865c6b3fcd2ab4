"""Snapshot a real overlay upper dir, unpack it, stack it: the merged view must not change."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import write_layer
from minibuild.layer.unpack import unpack_layer
from tests.conftest import overlay_available

from tests.fstree import listing, overlay

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, mknod)"),
    pytest.mark.skipif(not overlay_available(), reason="the kernel has no overlayfs"),
]


def make_lower(lower: Path) -> None:
    for d in ("etc", "olddir/sub", "data", "keep"):
        (lower / d).mkdir(parents=True)
    (lower / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (lower / "etc/gone").write_text("delete me\n")
    (lower / "olddir/a").write_text("a\n")
    (lower / "olddir/sub/b").write_text("b\n")
    (lower / "data/mod").write_text("mode changes\n")
    (lower / "over").write_text("old content\n")
    (lower / "keep/k").write_text("untouched\n")


def change_merged(m: Path) -> None:
    """What a RUN step might do."""
    (m / "etc/gone").unlink()
    subprocess.run(["rm", "-rf", str(m / "olddir")], check=True)
    (m / "olddir").mkdir()
    (m / "olddir/new").write_text("fresh\n")
    (m / "over").write_text("new content, longer than before\n")
    os.chmod(m / "data/mod", 0o600)
    (m / "newdir/deep").mkdir(parents=True)
    (m / "newdir/deep/f").write_bytes(os.urandom(3000))
    os.symlink("../etc/passwd", m / "newdir/pw")
    os.chown(m / "newdir/deep/f", 1000, 1000)


def tar_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in tarfile.open(fileobj=io.BytesIO(blob))}


def changed_overlay(tmp_path: Path) -> tuple[Path, Path, list[tuple]]:
    """A lower, the upper a real overlay left after change_merged(), and that merged view."""
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for d in (lower, upper, work):
        d.mkdir()
    make_lower(lower)
    with overlay(tmp_path / "m1", [lower], upper, work) as m1:
        change_merged(m1)
        return lower, upper, listing(m1)


def test_upper_to_layer_to_lowerdir_keeps_the_merged_view(tmp_path: Path):
    lower, upper, expected = changed_overlay(tmp_path)
    sink = io.BytesIO()
    result = write_layer(upper, sink, compression=Compression.NONE)
    members = tar_members(sink.getvalue())
    assert "etc/.wh.gone" in members and members["etc/.wh.gone"].isreg()
    assert "olddir/.wh..wh..opq" in members
    assert "olddir/sub/b" not in members and "keep/k" not in members
    assert not any(k.startswith("SCHILY.xattr.trusted") for m in members.values() for k in m.pax_headers)
    assert result.summary.whiteouts == ("etc/gone",) and result.summary.opaques == ("olddir",)
    assert members["data/mod"].mode == 0o600 and members["newdir/deep/f"].uid == 1000

    unpacked = tmp_path / "layer1"
    unpacked.mkdir()
    diff_id, summary = unpack_layer(io.BytesIO(sink.getvalue()), result.media_type, unpacked)
    assert diff_id == result.diff_id and summary == result.summary
    with overlay(tmp_path / "m2", [unpacked, lower]) as m2:
        assert listing(m2) == expected
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


def test_stacked_without_the_layer_the_view_differs(tmp_path: Path):
    """The comparison above can fail: the lower alone is not the merged view."""
    lower, upper, expected = changed_overlay(tmp_path)
    assert listing(lower) != expected


def test_xattr_whiteouts_in_the_upper(tmp_path: Path):
    """Newer kernels may mark a whiteout as a zero-size file with an overlay xattr."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    make_lower(lower)
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/passwd").write_bytes(b"")
    os.setxattr(upper / "etc/passwd", "trusted.overlay.whiteout", b"")
    (upper / "etc/group").write_bytes(b"")
    os.setxattr(upper / "etc/group", "user.overlay.whiteout", b"")
    (upper / "data").mkdir()
    os.setxattr(upper / "data", "trusted.overlay.opaque", b"x")  # "has xattr whiteouts": not opaque
    os.setxattr(upper / "data", "trusted.overlay.impure", b"y")
    sink = io.BytesIO()
    result = write_layer(upper, sink, compression=Compression.ZSTD)
    assert result.summary.whiteouts == ("etc/group", "etc/passwd")
    assert result.summary.opaques == ()
    unpacked = tmp_path / "layer"
    unpacked.mkdir()
    sink.seek(0)
    unpack_layer(sink, result.media_type, unpacked)
    with pytest.raises(OSError):
        os.getxattr(unpacked / "data", "trusted.overlay.opaque")
    with overlay(tmp_path / "m", [unpacked, lower]) as m:
        assert not (m / "etc/passwd").exists()
        assert (m / "data/mod").read_text() == "mode changes\n"
        assert (m / "etc").is_dir()


def test_kernel_whiteouts_are_chardevs_possibly_hardlinked(tmp_path: Path):
    """Kernels reuse one whiteout inode (nlink > 1): each must still become its own .wh. entry."""
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for d in (lower, upper, work):
        d.mkdir()
    for i in range(3):
        (lower / f"f{i}").write_text(str(i))
    with overlay(tmp_path / "m", [lower], upper, work) as m:
        for i in range(3):
            (m / f"f{i}").unlink()
    sink = io.BytesIO()
    write_layer(upper, sink, compression=Compression.NONE)
    members = tar_members(sink.getvalue())
    assert sorted(members) == [".wh.f0", ".wh.f1", ".wh.f2"]
    assert all(m.isreg() and m.size == 0 for m in members.values())
