"""Squash of plain files, dirs and symlinks (no whiteouts, no root needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from minibuild.errors import LayerError
from minibuild.layer.squash import base_lookup, squash_layers


def put(path: Path, data: str = "", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)
    return path


def layers(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).mkdir()
        out.append(tmp_path / name)
    return out


def squash(tmp_path: Path, build: list[Path], base: list[Path]) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    squash_layers(build, base, target)
    return target


def tree(root: Path) -> dict[str, str]:
    """rel path -> "dir", "file:<content>" or "link:<target>"."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + path.read_text()
    return out


def test_upper_layers_win_and_dirs_merge(tmp_path: Path):
    base0, l1, l2 = layers(tmp_path, "base0", "l1", "l2")
    put(base0 / "etc" / "base")
    put(l1 / "etc" / "a", "1")
    put(l1 / "etc" / "b", "1")
    put(l1 / "usr" / "bin" / "tool", "v1", 0o755)
    put(l2 / "etc" / "b", "2")
    put(l2 / "usr" / "bin" / "tool", "v2", 0o750)
    target = squash(tmp_path, [l1, l2], [base0])
    assert tree(target) == {
        "etc": "dir", "etc/a": "file:1", "etc/b": "file:2",
        "usr": "dir", "usr/bin": "dir", "usr/bin/tool": "file:v2",
    }
    assert stat.S_IMODE((target / "usr/bin/tool").stat().st_mode) == 0o750


def test_replacements_file_dir_symlink(tmp_path: Path):
    l1, l2 = layers(tmp_path, "l1", "l2")
    put(l1 / "x", "file")
    put(l1 / "lib" / "deep" / "so", "so")
    put(l1 / "y" / "child")
    (l2 / "x").mkdir()  # file -> dir
    put(l2 / "x" / "in", "in")
    os.symlink("usr/lib", l2 / "lib")  # dir -> symlink (the whole subtree goes)
    put(l2 / "y", "dir -> file")
    target = squash(tmp_path, [l1, l2], [])
    assert tree(target) == {"x": "dir", "x/in": "file:in", "lib": "link:usr/lib",
                            "y": "file:dir -> file"}


def test_symlinks_are_never_followed(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    l1, l2 = layers(tmp_path, "l1", "l2")
    os.symlink(str(outside), l1 / "d")
    (l2 / "d").mkdir()  # replaces the symlink, never writes through it
    put(l2 / "d" / "f", "inside")
    target = squash(tmp_path, [l1, l2], [])
    assert os.listdir(outside) == []
    assert tree(target) == {"d": "dir", "d/f": "file:inside"}


def test_metadata_and_dir_mtimes_survive(tmp_path: Path):
    l1, l2 = layers(tmp_path, "l1", "l2")
    f = put(l1 / "d" / "f", "x", 0o640)
    os.utime(f, ns=(1, 1_111_000_000_123))
    os.utime(l1 / "d", ns=(1, 2_222_000_000_000))
    put(l2 / "d" / "g", "y")
    (l2 / "d").chmod(0o711)
    os.utime(l2 / "d", ns=(1, 3_333_000_000_000))
    os.symlink("f", l2 / "d" / "s")
    os.utime(l2 / "d" / "s", ns=(1, 4_444_000_000_000), follow_symlinks=False)
    os.utime(l2 / "d", ns=(1, 3_333_000_000_000))
    target = squash(tmp_path, [l1, l2], [])
    assert (target / "d" / "f").stat().st_mtime_ns == 1_111_000_000_123
    assert (target / "d").stat().st_mtime_ns == 3_333_000_000_000  # the upper's, set last
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o711
    assert (target / "d" / "s").lstat().st_mtime_ns == 4_444_000_000_000


def test_hardlinks_within_a_layer_stay_linked(tmp_path: Path):
    (l1,) = layers(tmp_path, "l1")
    a = put(l1 / "a", "data")
    os.link(a, l1 / "b")
    target = squash(tmp_path, [l1], [])
    assert (target / "a").stat().st_ino == (target / "b").stat().st_ino
    assert (target / "a").stat().st_ino != a.stat().st_ino  # copied, not linked to the source


def test_big_file_is_copied_whole(tmp_path: Path):
    (l1,) = layers(tmp_path, "l1")
    data = os.urandom(3 << 20)
    (l1 / "big").write_bytes(data)
    target = squash(tmp_path, [l1], [])
    assert (target / "big").read_bytes() == data


def test_refusals(tmp_path: Path):
    (l1,) = layers(tmp_path, "l1")
    target = tmp_path / "target"
    target.mkdir()
    put(target / "junk")
    with pytest.raises(LayerError, match="not empty"):
        squash_layers([l1], [], target)
    (target / "junk").unlink()
    put(l1 / "dir" / ".wh.sneaky")
    with pytest.raises(LayerError, match="sneaky"):
        squash_layers([l1], [], target)


def test_base_lookup_follows_overlay_rules(tmp_path: Path):
    top, low = layers(tmp_path, "top", "low")
    put(low / "d" / "x")
    put(low / "f" / "y")
    put(low / "g" / "z")
    put(top / "f", "file hides the dir below")
    (top / "g").mkdir()
    os.symlink("d", top / "s")
    base = [os.fsencode(top), os.fsencode(low)]
    assert base_lookup(base, (b"d", b"x")) is not None
    assert base_lookup(base, (b"f", b"y")) is None
    assert base_lookup(base, (b"g", b"z")) is not None  # dirs merge
    assert base_lookup(base, (b"s", b"x")) is None  # never through a symlink
    assert base_lookup(base, (b"nope",)) is None
