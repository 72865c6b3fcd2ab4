"""Squash with whiteouts, opaque dirs, devices and owners; checked against real overlay mounts."""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
from pathlib import Path

import pytest

from minibuild.errors import LayerError
from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import write_layer
from minibuild.layer.squash import OPAQUE_XATTR, base_lookup, squash_layers
from tests.conftest import overlay_available
from tests.fstree import listing, overlay

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, mknod, trusted.*)"),
    pytest.mark.skipif(not overlay_available(), reason="the kernel has no overlayfs"),
]


# ---------------------------------------------------------------- building layer dirs


def wh(path: Path) -> None:
    """A whiteout: char device 0:0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def opaque(path: Path, value: bytes = b"y", name: str = OPAQUE_XATTR) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, name, value)
    return path


def put(path: Path, data: str = "", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)
    return path


def is_wh(path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


# ---------------------------------------------------------------- real overlay views


def assert_same_view(tmp_path: Path, layers: list[Path], base: list[Path], target: Path) -> list:
    """The merged view of (target + base) equals that of (layers reversed + base)."""
    with overlay(tmp_path / "m-layers", [*reversed(layers), *base]) as merged:
        want = listing(merged, full=True)
    with overlay(tmp_path / "m-squashed", [target, *base]) as merged:
        got = listing(merged, full=True)
    assert got == want
    return got


def squash(tmp_path: Path, layers: list[Path], base: list[Path]) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    squash_layers(layers, base, target)
    return target


def tar_names(target: Path) -> list[str]:
    buf = io.BytesIO()
    write_layer(target, buf, compression=Compression.NONE)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        return tf.getnames()


@pytest.fixture
def dirs(tmp_path: Path):
    def make(*names: str) -> list[Path]:
        out = []
        for name in names:
            (tmp_path / name).mkdir()
            out.append(tmp_path / name)
        return out
    return make


# ---------------------------------------------------------------- the cases


def test_added_then_deleted_leaves_nothing(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    put(base0 / "keep", "base")
    put(l1 / "tmp" / "big", "x" * 1000)
    put(l1 / "scratch", "s")
    wh(l2 / "tmp")
    wh(l2 / "scratch")
    target = squash(tmp_path, [l1, l2], [base0])
    assert sorted(os.listdir(target)) == []
    assert_same_view(tmp_path, [l1, l2], [base0], target)
    assert tar_names(target) == []


def test_base_file_deleted_keeps_whiteout(tmp_path, dirs):
    base1, base0, l1, l2 = dirs("base1", "base0", "l1", "l2")
    put(base0 / "etc" / "old", "old")
    put(base0 / "etc" / "gone-in-base", "g")
    wh(base1 / "etc" / "gone-in-base")  # the base itself deleted it: nothing to hide
    put(l1 / "etc" / "new", "new")
    wh(l2 / "etc" / "old")
    wh(l2 / "etc" / "gone-in-base")
    wh(l2 / "etc" / "new")
    target = squash(tmp_path, [l1, l2], [base1, base0])
    assert is_wh(target / "etc" / "old")
    assert not os.path.lexists(target / "etc" / "gone-in-base")
    assert not os.path.lexists(target / "etc" / "new")
    view = assert_same_view(tmp_path, [l1, l2], [base1, base0], target)
    assert [e[0] for e in view] == [".", "etc"]
    assert sorted(tar_names(target)) == ["etc", "etc/.wh.old"]


def test_whiteout_under_base_opaque_dir_or_file_is_dropped(tmp_path, dirs):
    base1, base0, l1 = dirs("base1", "base0", "l1")
    put(base0 / "d" / "x")
    put(base0 / "f" / "y")
    opaque(base1 / "d")  # hides base0's d/x
    put(base1 / "f", "now a file")  # f/y is not reachable
    wh(l1 / "d" / "x")
    l1.joinpath("f").mkdir()
    wh(l1 / "f" / "y")
    target = squash(tmp_path, [l1], [base1, base0])
    assert not os.path.lexists(target / "d" / "x")
    assert not os.path.lexists(target / "f" / "y")
    assert_same_view(tmp_path, [l1], [base1, base0], target)


def test_opaque_over_base_dir_stays_opaque(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    put(base0 / "app" / "base-child")
    put(l1 / "app" / "build-child")
    opaque(l2 / "app")
    put(l2 / "app" / "fresh", "fresh")
    target = squash(tmp_path, [l1, l2], [base0])
    assert is_opaque(target / "app")
    assert os.listdir(target / "app") == ["fresh"]
    view = assert_same_view(tmp_path, [l1, l2], [base0], target)
    assert [e[0] for e in view] == [".", "app", "app/fresh"]
    assert sorted(tar_names(target)) == ["app", "app/.wh..wh..opq", "app/fresh"]


def test_plain_dir_over_opaque_dir_stays_opaque(tmp_path, dirs):
    base0, l1, l2, l3 = dirs("base0", "l1", "l2", "l3")
    put(base0 / "app" / "old")
    put(base0 / "app" / "sub" / "mid")
    opaque(l1 / "app")
    put(l1 / "app" / "sub" / "mid")
    put(l2 / "app" / "late")  # plain: merges with l1's opaque app
    put(l3 / "app" / "sub" / "x")
    wh(l3 / "app" / "sub" / "mid")  # under the opaque app: nothing of the base to hide
    target = squash(tmp_path, [l1, l2, l3], [base0])
    assert is_opaque(target / "app") and not is_opaque(target / "app" / "sub")
    assert os.listdir(target / "app" / "sub") == ["x"]
    view = assert_same_view(tmp_path, [l1, l2, l3], [base0], target)
    assert sorted(e[0] for e in view) == [".", "app", "app/late", "app/sub", "app/sub/x"]


def test_opaque_over_build_only_dir_becomes_plain(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    put(base0 / "other")
    put(l1 / "mine" / "a")
    put(l1 / "mine" / "b")
    opaque(l2 / "mine")
    put(l2 / "mine" / "c")
    target = squash(tmp_path, [l1, l2], [base0])
    assert not is_opaque(target / "mine")
    assert os.listxattr(target / "mine") == []
    assert os.listdir(target / "mine") == ["c"]
    assert_same_view(tmp_path, [l1, l2], [base0], target)


def test_user_overlay_opaque_counts_as_opaque(tmp_path, dirs):
    """Layers from a `userxattr` mount mark opaque dirs with user.overlay.opaque (no real mount
    here reads both namespaces, so this one is checked on the target only)."""
    base0, l1, l2 = dirs("base0", "l1", "l2")
    put(base0 / "app" / "base-child")
    put(l1 / "mine" / "a")
    put(l1 / "app" / "a")
    opaque(l2 / "mine", name="user.overlay.opaque")
    opaque(l2 / "app", name="user.overlay.opaque")
    put(l2 / "app" / "c")
    target = squash(tmp_path, [l1, l2], [base0])
    assert os.listxattr(target / "mine") == [] and os.listdir(target / "mine") == []
    assert os.listxattr(target / "app") == [OPAQUE_XATTR] and os.listdir(target / "app") == ["c"]


def test_opaque_x_is_not_opaque(tmp_path, dirs):
    base0, l1 = dirs("base0", "l1")
    put(base0 / "d" / "base-child")
    opaque(l1 / "d", b"x")
    put(l1 / "d" / "new")
    target = squash(tmp_path, [l1], [base0])
    assert not is_opaque(target / "d")
    assert sorted(e[0] for e in assert_same_view(tmp_path, [l1], [base0], target)) == [
        ".", "d", "d/base-child", "d/new"]


def test_file_becomes_dir_and_dir_becomes_symlink(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    put(base0 / "conf", "a file in the base")
    put(base0 / "lib" / "libc.so", "libc")
    (l1 / "conf").mkdir()  # a plain dir where the base had a file (tar-unpacked style)
    put(l1 / "conf" / "inner", "inner")
    os.symlink("usr/lib", l2 / "lib")
    target = squash(tmp_path, [l1, l2], [base0])
    assert (target / "conf").is_dir() and not (target / "conf").is_symlink()
    assert os.readlink(target / "lib") == "usr/lib"
    assert_same_view(tmp_path, [l1, l2], [base0], target)


def test_dir_over_whiteout_and_over_file_hides_base(tmp_path, dirs):
    """A later plain dir over what an earlier build layer deleted must not let base children back."""
    base0, l1, l2, l3 = dirs("base0", "l1", "l2", "l3")
    put(base0 / "d" / "old")
    put(base0 / "e" / "old")
    wh(l1 / "d")
    put(l1 / "e", "a file now")
    put(l2 / "d" / "new")  # plain (non-opaque) dir over l1's whiteout
    put(l3 / "e" / "new")  # plain dir over l1's file
    target = squash(tmp_path, [l1, l2, l3], [base0])
    assert is_opaque(target / "d") and is_opaque(target / "e")
    view = assert_same_view(tmp_path, [l1, l2, l3], [base0], target)
    assert sorted(e[0] for e in view) == [".", "d", "d/new", "e", "e/new"]


def test_hardlinks_devices_owners_modes_xattrs(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    first = put(l1 / "bin" / "tool", "#!/bin/sh\n", 0o755)
    os.link(first, l1 / "bin" / "tool-alias")
    suid = put(l1 / "bin" / "su", "su", 0o755)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    owned = put(l1 / "home" / "u" / "f", "mine", 0o600)
    os.chown(owned, 1000, 1001)
    os.chown(l1 / "home" / "u", 1000, 1001)
    os.setxattr(owned, "user.note", b"hi")
    os.setxattr(owned, "trusted.overlay.origin", b"junk")  # must not travel
    os.mkfifo(l1 / "fifo", 0o640)
    os.mknod(l1 / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.symlink("tool", l1 / "bin" / "link")
    os.lchown(l1 / "bin" / "link", 5, 6)
    os.utime(first, ns=(1, 1_500_000_000_000_000_000))
    os.utime(l1 / "bin", ns=(1, 1_400_000_000_000_000_000))
    os.utime(l1 / "bin" / "link", ns=(1, 1_300_000_000_000_000_000), follow_symlinks=False)
    put(l2 / "bin" / "extra", "x")  # merging bin/ must not disturb l1's content
    os.utime(l2 / "bin", ns=(1, 1_450_000_000_000_000_000))
    target = squash(tmp_path, [l1, l2], [base0])
    t = target / "bin"
    assert (t / "tool").stat().st_ino == (t / "tool-alias").stat().st_ino
    assert (t / "tool").stat().st_nlink == 2
    assert stat.S_IMODE((t / "su").stat().st_mode) == 0o4755
    assert (t / "link").lstat().st_uid == 5 and os.readlink(t / "link") == "tool"
    assert (t / "link").lstat().st_mtime_ns == 1_300_000_000_000_000_000
    assert t.stat().st_mtime_ns == 1_450_000_000_000_000_000
    f = target / "home" / "u" / "f"
    assert (f.stat().st_uid, f.stat().st_gid) == (1000, 1001)
    assert os.listxattr(f) == ["user.note"]
    assert stat.S_ISFIFO((target / "fifo").lstat().st_mode)
    assert (target / "null").lstat().st_rdev == os.makedev(1, 3)
    assert_same_view(tmp_path, [l1, l2], [base0], target)
    names = tar_names(target)
    assert "bin/tool-alias" in names and "null" in names


def test_hardlinks_pair_only_within_one_layer(tmp_path, dirs):
    base0, l1, l2 = dirs("base0", "l1", "l2")
    a = put(l1 / "a", "one")
    os.link(a, l1 / "b")
    put(l2 / "a", "two")  # replaces a; b keeps the old body
    target = squash(tmp_path, [l1, l2], [base0])
    assert (target / "a").read_text() == "two" and (target / "b").read_text() == "one"
    assert (target / "b").stat().st_nlink == 1
    assert_same_view(tmp_path, [l1, l2], [base0], target)


def test_overlay_private_xattrs_are_refused_or_dropped(tmp_path, dirs):
    base0, l1 = dirs("base0", "l1")
    d = l1 / "moved"
    d.mkdir()
    os.setxattr(d, "trusted.overlay.redirect", b"/elsewhere")
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(LayerError, match="moved"):
        squash_layers([l1], [base0], target)


# ---------------------------------------------------------------- random layers vs overlay


NAMES = ["a", "b", "c"]
KINDS = ["none", "none", "file", "file", "dir", "opaque", "whiteout", "symlink", "fifo"]


def random_tree(rng: random.Random, root: Path, depth: int) -> None:
    """Random overlay-format entries under `root` (a dir of the layer)."""
    for name in NAMES:
        kind = rng.choice(KINDS if depth < 3 else KINDS[:4] + ["whiteout"])
        path = root / name
        if kind == "file":
            put(path, rng.choice(["1", "22", "333"]), rng.choice([0o644, 0o600, 0o755]))
        elif kind == "symlink":
            os.symlink(rng.choice(["a", "../b", "/c"]), path)
        elif kind == "whiteout":
            wh(path)
        elif kind == "fifo":
            os.mkfifo(path, 0o640)
        elif kind in ("dir", "opaque"):
            path.mkdir()
            if kind == "opaque":
                os.setxattr(path, OPAQUE_XATTR, b"y")
            random_tree(rng, path, depth + 1)
            path.chmod(rng.choice([0o755, 0o700, 0o751]))
        if kind != "none":
            os.utime(path, ns=(0, rng.randrange(1, 10**18)), follow_symlinks=False)


@pytest.mark.parametrize("seed", range(200))
def test_random_layers_give_the_same_view(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    base = [tmp_path / f"base{i}" for i in range(rng.randint(1, 3))]
    layers = [tmp_path / f"layer{i}" for i in range(rng.randint(1, 4))]
    for d in [*base, *layers]:
        d.mkdir()
        random_tree(rng, d, 0)
    target = squash(tmp_path, layers, base)
    assert_same_view(tmp_path, layers, base, target)
    assert_minimal(target, base)
    tar_names(target)  # snapshot accepts what squash wrote


def assert_minimal(target: Path, base: list[Path]) -> None:
    """Whiteouts and opaque markers only where the base has something to hide; no overlay junk."""
    lowers = [os.fsencode(b) for b in base]
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            parts = tuple(os.fsencode(p) for p in path.relative_to(target).parts)
            names = os.listxattr(path, follow_symlinks=False)
            assert all(n == OPAQUE_XATTR or n.startswith("user.") for n in names), path
            if is_wh(path):
                assert base_lookup(lowers, parts) is not None, path
            if is_opaque(path):
                seen = base_lookup(lowers, parts)
                assert seen is not None and stat.S_ISDIR(seen.st_mode), path


def test_dir_replaced_by_symlink_is_not_chmodded_through(tmp_path, dirs):
    """A dir recorded by an early layer, whose parent later became a symlink: finish() must not
    set modes through that symlink (here it would reach outside the target)."""
    base0, l1, l2 = dirs("base0", "l1", "l2")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub").chmod(0o755)
    (l1 / "p" / "sub").mkdir(parents=True)
    (l1 / "p" / "sub").chmod(0o700)
    os.symlink(outside, l2 / "p")
    target = squash(tmp_path, [l1, l2], [base0])
    assert os.readlink(target / "p") == str(outside)
    assert stat.S_IMODE((outside / "sub").stat().st_mode) == 0o755


def test_no_mount_left_behind(tmp_path: Path):
    assert str(tmp_path.parent) not in Path("/proc/mounts").read_text()
