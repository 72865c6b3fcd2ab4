"""deepcheck: a layer dir made by minibuild's own unpack (or snapshot) matches its blob; damage shows.

Device nodes, whiteouts (0:0 char devices), owners and `trusted.overlay.opaque` need root, as
unpack itself does; those tests skip without it.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import shutil
import socket
import tarfile
from pathlib import Path

import pytest

from minibuild.layer import deepcheck, unpack
from minibuild.oci.digest import Digest
from minibuild.errors import LayerError
from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import write_layer
from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture

PLAIN = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
T = 1_600_000_000  # the tars' mtimes
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="unpack makes devices and owners as root")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          owner: int = 0, mtime: int = T, link: str = "", dev: tuple[int, int] = (0, 0),
          xattrs: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    """One tar member and its body."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, owner, owner, mtime
    info.linkname = link
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
    return info, data


def tar_of(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """An uncompressed PAX tar of the entries, in the order given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return raw.getvalue()


def unpacked(tmp_path: Path, tar: bytes, name: str = "layer") -> Path:
    """The dir minibuild's unpack makes of `tar`."""
    target = tmp_path / name
    target.mkdir()
    unpack.unpack_layer(io.BytesIO(tar), PLAIN, target)
    return target


def compare(tar: bytes, directory: Path) -> deepcheck.Comparison:
    return deepcheck.compare_layer(io.BytesIO(tar), PLAIN, directory, limit=50)


def found(tar: bytes, directory: Path) -> list[tuple[str, str]]:
    return [(d.path, d.what) for d in compare(tar, directory).differences]


@functools.cache
def rich_tar() -> bytes:
    """A layer with every kind of entry unpack makes (devices and owners need root)."""
    privileged = os.geteuid() == 0
    entries = [
        entry("bin/", tarfile.DIRTYPE, mode=0o755),
        entry("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755, owner=1000 if privileged else 0,
              xattrs={"user.note": "hi"}),
        entry("bin/tool2", tarfile.LNKTYPE, link="bin/tool"),
        entry("bin/sh", tarfile.SYMTYPE, link="tool", mode=0o777),
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
        entry("etc/shadow", data=b"root:*:1::::::\n", mode=0o600, mtime=T - 50),
        entry("etc/copy", data=b"root:x:0:0::/root:/bin/sh\n"),
        entry("run/", tarfile.DIRTYPE, mode=0o1777),
        entry("run/pipe", tarfile.FIFOTYPE, mode=0o600),
        entry("big", data=os.urandom(3 * (1 << 20) + 17)),  # several read chunks
    ]
    if privileged:
        entries += [
            entry("dev/", tarfile.DIRTYPE, mode=0o755),
            entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            entry("opt/.wh.old"),
            entry("var/", tarfile.DIRTYPE, mode=0o755),
            entry("var/cache/", tarfile.DIRTYPE, mode=0o700),
            entry("var/cache/.wh..wh..opq"),
            entry("var/cache/new", data=b"new"),
        ]
    return tar_of(*entries)


def test_an_unpacked_layer_matches_its_blob_and_the_diff_id_is_the_tars(tmp_path):
    tar = rich_tar()
    layer = unpacked(tmp_path, tar)
    result = compare(tar, layer)
    assert result.ok and result.differences == () and result.count == 0
    assert result.diff_id == Digest.of(tar)
    members = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()
    assert result.entries == len(members)
    assert result.content_bytes == sum(m.size for m in members if m.isreg())


def test_gzip_and_zstd_blobs_are_read_too(tmp_path):
    import zstandard

    tar = rich_tar()
    layer = unpacked(tmp_path, tar)
    for blob, media_type in ((gzip.compress(tar, mtime=0), GZIP),
                             (zstandard.ZstdCompressor().compress(tar), ZSTD)):
        result = deepcheck.compare_layer(io.BytesIO(blob), media_type, layer)
        assert result.ok and result.diff_id == Digest.of(tar)
    os.chmod(layer / "etc/passwd", 0o600)
    assert not deepcheck.compare_layer(io.BytesIO(gzip.compress(tar)), GZIP, layer).ok


def damage_content(d: Path) -> None:
    with open(d / "etc/passwd", "r+b") as f:
        f.write(b"ROOT")  # same size, mtime restored below
    os.utime(d / "etc/passwd", (T, T))


def damage_big_content(d: Path) -> None:
    with open(d / "big", "r+b") as f:
        f.seek(2 * (1 << 20) + 5)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(d / "big", (T, T))


def damage_size(d: Path) -> None:
    with open(d / "etc/passwd", "ab") as f:
        f.write(b"x")
    os.utime(d / "etc/passwd", (T, T))


def damage_symlink(d: Path) -> None:
    os.unlink(d / "bin/sh")
    os.symlink("tool2", d / "bin/sh")
    os.utime(d / "bin/sh", (T, T), follow_symlinks=False)


def damage_hardlink(d: Path) -> None:
    """bin/tool2 becomes a copy of bin/tool: same bytes, mode, owner, mtime, xattrs; own inode."""
    tmp = d / "bin/tool2.tmp"
    shutil.copy2(d / "bin/tool", tmp)
    st = (d / "bin/tool").stat()
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o755)
    os.setxattr(tmp, "user.note", b"hi")
    os.utime(tmp, (T, T))
    os.replace(tmp, d / "bin/tool2")


def damage_shared_inode(d: Path) -> None:
    """etc/copy (same bytes and attributes as etc/passwd in the blob) becomes a link to it."""
    os.unlink(d / "etc/copy")
    os.link(d / "etc/passwd", d / "etc/copy")


def damage_replace_by_dir(d: Path) -> None:
    os.unlink(d / "etc/passwd")
    os.mkdir(d / "etc/passwd")


def damage_xattr(d: Path) -> None:
    os.removexattr(d / "bin/tool", "user.note")


def damage_mtime(d: Path) -> None:
    os.utime(d / "etc/shadow", (T - 3600, T - 3600))


def damage_touch(d: Path) -> None:
    os.utime(d / "etc/shadow")  # now: newer than the tar says, and not the tar's newest time


def damage_dir_mode(d: Path) -> None:
    os.chmod(d / "run", 0o755)


DAMAGE = [
    ("content changed, same size", damage_content, "etc/passwd", "content differs (same size)"),
    ("one byte of a large file", damage_big_content, "big", "content differs (same size)"),
    ("size", damage_size, "etc/passwd", "size 27, the blob says 26"),
    ("chmod", lambda d: os.chmod(d / "bin/tool", 0o700), "bin/tool", "mode 0700, the blob says 0755"),
    ("chmod of a dir", damage_dir_mode, "run", "mode 0755, the blob says 1777"),
    ("extra file", lambda d: (d / "etc/extra").write_text("x"), "etc/extra",
     "not in the blob (a regular file here)"),
    ("extra dir", lambda d: (d / "etc/more").mkdir(), "etc/more", "not in the blob (a directory here)"),
    ("missing file", lambda d: os.unlink(d / "etc/passwd"), "etc/passwd",
     "missing (the blob has a regular file)"),
    ("missing dir", lambda d: shutil.rmtree(d / "etc"), "etc",
     "missing (the blob has a directory of 3 entries)"),
    ("symlink retarget", damage_symlink, "bin/sh", "symlink to 'tool2', the blob says 'tool'"),
    ("hard link broken", damage_hardlink, "bin/tool2", "hard link to bin/tool broken"),
    ("two files made one inode", damage_shared_inode, "etc/passwd", "shares its inode with etc/copy"),
    ("file replaced by a dir", damage_replace_by_dir, "etc/passwd",
     "a regular file in the blob, a directory here"),
    ("xattr lost", damage_xattr, "bin/tool", "xattrs differ (user.note)"),
    ("fifo replaced", lambda d: (os.unlink(d / "run/pipe"), (d / "run/pipe").write_text("")),
     "run/pipe", "a fifo in the blob, a regular file here"),
    ("mtime older", damage_mtime, "etc/shadow", f"mtime {T - 3600}, the blob says {T - 50}"),
    ("mtime touched", damage_touch, "etc/shadow", "the blob says"),
]


@pytest.mark.parametrize("label, damage, path, what", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_each_kind_of_damage_is_found_at_its_path(tmp_path, label, damage, path, what):
    tar = rich_tar()
    layer = unpacked(tmp_path, tar)
    assert compare(tar, layer).ok
    damage(layer)
    result = compare(tar, layer)
    assert not result.ok
    assert [d.path for d in result.differences] == [path]
    assert what in result.differences[0].what


@root_only
@pytest.mark.parametrize("label, damage, path, what", [
    ("chown", lambda d: os.chown(d / "etc/passwd", 1, 1), "etc/passwd", "owner 1:1, the blob says 0:0"),
    ("chown of a symlink", lambda d: os.chown(d / "bin/sh", 7, 7, follow_symlinks=False), "bin/sh",
     "owner 7:7"),
    ("whiteout turned into a plain file",
     lambda d: (os.unlink(d / "opt/old"), (d / "opt/old").write_text("")), "opt/old",
     "a whiteout in the blob, a regular file here"),
    ("whiteout removed", lambda d: os.unlink(d / "opt/old"), "opt/old", "missing (the blob has a whiteout)"),
    ("extra whiteout", lambda d: os.mknod(d / "opt/gone", 0o600 | 0o020000, 0), "opt/gone",
     "not in the blob (a whiteout here)"),
    ("lost opaque xattr", lambda d: os.removexattr(d / "var/cache", unpack.OPAQUE_XATTR), "var/cache",
     "opaque in the blob, not here"),
    ("extra opaque xattr", lambda d: os.setxattr(d / "etc", unpack.OPAQUE_XATTR, b"y"), "etc",
     "opaque here"),
    ("device numbers", lambda d: (os.unlink(d / "dev/null"),
                                  os.mknod(d / "dev/null", 0o666 | 0o020000, os.makedev(1, 5)),
                                  os.chmod(d / "dev/null", 0o666), os.utime(d / "dev/null", (T, T))),
     "dev/null", "device 1:5, the blob says 1:3"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_damage_only_root_can_do_or_see_is_found(tmp_path, label, damage, path, what):
    test_each_kind_of_damage_is_found_at_its_path(tmp_path, label, damage, path, what)


# -- unpack's rules, mirrored: tricky but valid layers pass as unpack lays them out ------------

TRICKY = {
    "a path twice: the last entry wins": [
        entry("a", data=b"first"), entry("a", data=b"second!", mode=0o600)],
    "a dir over a dir keeps its children and takes the new mode": [
        entry("d/", tarfile.DIRTYPE), entry("d/f", data=b"f"), entry("d/", tarfile.DIRTYPE, mode=0o700)],
    "a file over a dir removes the children": [
        entry("d/", tarfile.DIRTYPE), entry("d/f", data=b"f"), entry("d", data=b"now a file")],
    "a link to a file later replaced keeps the old inode": [
        entry("a", data=b"old"), entry("b", tarfile.LNKTYPE, link="a"), entry("a", data=b"new")],
    "a chain of hard links is one inode": [
        entry("a", data=b"x"), entry("b", tarfile.LNKTYPE, link="a"), entry("c", tarfile.LNKTYPE, link="b")],
    "implicit parents": [entry("x/y/z", data=b"deep")],
}
TRICKY_ROOT = {
    "a whiteout then the dir: recreated, so opaque": [
        entry(".wh.d"), entry("d/", tarfile.DIRTYPE), entry("d/f", data=b"f")],
    "the dir then its whiteout: opaque": [
        entry("d/", tarfile.DIRTYPE), entry("d/f", data=b"f"), entry(".wh.d")],
    "a whiteout then a child below it: an implicit opaque dir": [entry(".wh.d"), entry("d/f", data=b"f")],
    "a file over a whiteout": [entry(".wh.a"), entry("a", data=b"back")],
    "a whiteout of a file this layer has: the file stays": [entry("a", data=b"a"), entry(".wh.a")],
    "an opaque marker at the root": [entry(".wh..wh..opq"), entry("a", data=b"a")],
    "an opaque marker before its dir entry": [entry("d/.wh..wh..opq"), entry("d/", tarfile.DIRTYPE)],
    "aufs bookkeeping is skipped": [entry(".wh..wh.plnk/123", data=b"x"), entry("a", data=b"a")],
}


@pytest.mark.parametrize("entries", list(TRICKY.values()), ids=list(TRICKY))
def test_tricky_layers_pass_as_unpack_lays_them_out(tmp_path, entries):
    tar = tar_of(*entries)
    assert found(tar, unpacked(tmp_path, tar)) == []


@root_only
@pytest.mark.parametrize("entries", list(TRICKY_ROOT.values()), ids=list(TRICKY_ROOT))
def test_tricky_whiteout_layers_pass_as_unpack_lays_them_out(tmp_path, entries):
    test_tricky_layers_pass_as_unpack_lays_them_out(tmp_path, entries)


def test_a_dir_checked_against_a_tar_that_differs_in_one_rule_is_damaged(tmp_path):
    """The tricky cases the other way round: b is the old inode here, the tar links it to a."""
    first = tar_of(entry("a", data=b"old"), entry("b", tarfile.LNKTYPE, link="a"), entry("a", data=b"new"))
    other = tar_of(entry("a", data=b"new"), entry("b", tarfile.LNKTYPE, link="a"))
    layer = unpacked(tmp_path, first)
    assert found(other, layer) == [("b", "hard link to a broken: a separate inode here")]


def test_a_blob_unpack_would_refuse_is_a_layer_error(tmp_path):
    layer = tmp_path / "layer"
    layer.mkdir()
    with pytest.raises(LayerError):
        compare(tar_of(entry("../escape", data=b"x")), layer)
    with pytest.raises(LayerError):
        deepcheck.compare_layer(io.BytesIO(b"not gzip at all"), GZIP, layer)


def test_only_the_first_differences_are_kept_but_all_are_counted(tmp_path):
    tar = tar_of(*(entry(f"f{i:02d}", data=b"x") for i in range(12)))
    layer = unpacked(tmp_path, tar)
    for i in range(12):
        os.chmod(layer / f"f{i:02d}", 0o600)
    result = deepcheck.compare_layer(io.BytesIO(tar), PLAIN, layer, limit=3)
    assert result.count == 12
    assert [d.path for d in result.differences] == ["f00", "f01", "f02"]


# -- layers the build adopts as they are: its upper dir, snapshotted -------------------------


def snapshot(upper: Path, clamp: int | None = None) -> bytes:
    """The layer blob (uncompressed) snapshot writes for an upper dir."""
    sink = io.BytesIO()
    write_layer(upper, sink, compression=Compression.NONE, clamp_mtime=clamp)
    return sink.getvalue()


def make_upper(path: Path) -> Path:
    """An upper dir as a step leaves it: files written now, one older file, a hard link."""
    (path / "app/sub").mkdir(parents=True)
    (path / "app/new.txt").write_text("written now\n")
    (path / "app/sub/also-new").write_bytes(b"\0" * 5000)
    (path / "app/old.txt").write_text("from the context\n")
    os.utime(path / "app/old.txt", (1_000_000_000, 1_000_000_000))
    os.link(path / "app/new.txt", path / "app/sub/link")
    os.symlink("new.txt", path / "app/ln")
    return path


def test_an_adopted_upper_dir_matches_its_snapshot_with_source_date_epoch(tmp_path):
    upper = make_upper(tmp_path / "upper")
    epoch = 1_200_000_000  # after old.txt, before everything written now: those are clamped
    tar = snapshot(upper, clamp=epoch)
    result = deepcheck.compare_layer(io.BytesIO(tar), PLAIN, upper)
    assert result.ok, result.differences
    os.utime(upper / "app/old.txt", (epoch + 5, epoch + 5))  # not clamped in the tar: damage
    result = deepcheck.compare_layer(io.BytesIO(tar), PLAIN, upper)
    assert [d.path for d in result.differences] == ["app/old.txt"]


def test_an_adopted_upper_dir_matches_its_snapshot_and_sockets_are_ignored(tmp_path):
    upper = make_upper(tmp_path / "upper")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(upper / "app/sock"))
    finally:
        sock.close()
    tar = snapshot(upper)
    assert deepcheck.compare_layer(io.BytesIO(tar), PLAIN, upper).ok
    os.unlink(upper / "app/sock")
    (upper / "app/sock").write_text("")
    result = deepcheck.compare_layer(io.BytesIO(tar), PLAIN, upper)
    assert [d.path for d in result.differences] == ["app/sock"]


@root_only
def test_overlay_whiteouts_and_opaque_dirs_of_an_upper_dir_match_their_tar_form(tmp_path):
    upper = make_upper(tmp_path / "upper")
    os.mknod(upper / "app/gone", 0o020000, 0)  # overlay's whiteout: mode 0, 0:0
    (upper / "etc").mkdir()
    os.setxattr(upper / "etc", unpack.OPAQUE_XATTR, b"y")
    os.setxattr(upper / "etc", "trusted.overlay.impure", b"y")  # overlay's own: not in a layer
    tar = snapshot(upper)
    assert deepcheck.compare_layer(io.BytesIO(tar), PLAIN, upper).ok


@root_only
def test_a_damaged_inode_linked_into_two_layer_dirs_is_reported_in_each_with_a_note(tmp_path):
    tar = tar_of(entry("app/", tarfile.DIRTYPE, mode=0o755), entry("app/f", data=b"shared bytes"),
                 entry("app/own", data=b"own"))
    first = unpacked(tmp_path, tar, "first")
    second = unpacked(tmp_path, tar, "second")
    os.unlink(second / "app/f")
    os.link(first / "app/f", second / "app/f")  # what a COPY rebuild's reuse does
    assert compare(tar, first).ok and compare(tar, second).ok
    with open(first / "app/f", "r+b") as f:
        f.write(b"SHARED")
    os.utime(first / "app/f", (T, T))
    for layer in (first, second):
        (difference,) = compare(tar, layer).differences
        assert (difference.path, difference.outside_links) == ("app/f", 1)
        assert "1 more link(s) outside this layer dir" in difference.line()
        assert "removing this dir does not repair them" in difference.line()
    os.chmod(first / "app/own", 0o600)  # not shared: no note
    (difference, _) = compare(tar, first).differences
    assert difference.path == "app/f"
    own = compare(tar, first).differences[1]
    assert own.outside_links == 0 and "outside" not in own.line()


def test_10000_levels_deep(fast_tmp):
    make_deep(fast_tmp / "upper", bottom=b"deep")
    sink = io.BytesIO()
    write_layer(fast_tmp / "upper", sink, compression=Compression.NONE)
    tar = sink.getvalue()
    layer = unpacked(fast_tmp, tar)
    assert found(tar, layer) == []
    fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY)
    try:  # damage the bottom file, 10,000 dirs down
        for _ in range(DEEP):
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.truncate(os.open("bottom", os.O_WRONLY, dir_fd=fd), 0)
    finally:
        os.close(fd)
    assert [p for p, _ in found(tar, layer)] == ["/".join(["d"] * DEEP) + "/bottom"]
