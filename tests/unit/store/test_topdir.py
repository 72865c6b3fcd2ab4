"""The ext4 top-dir flag on the dirs under which scratch trees are made (see minibuild/topdir.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from minibuild.store import topdir
from minibuild.containers.records import Container, Containers
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor
from minibuild.store.layout import Store


def lsattr_flags(path: Path) -> str:
    """The flag letters e2fsprogs' lsattr shows for a dir (T = top of dir hierarchy)."""
    out = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


@pytest.fixture
def ext4_dir(tmp_path: Path) -> Path:
    """A dir on a filesystem that keeps the flag (ext2/3/4), checked by lsattr."""
    if shutil.which("lsattr") is None:
        pytest.skip("lsattr (e2fsprogs) is not installed")
    probe = tmp_path / "probe"
    probe.mkdir()
    if subprocess.run(["lsattr", "-d", str(probe)], capture_output=True).returncode != 0:
        pytest.skip(f"{tmp_path} is not on a filesystem with ext2-style flags")
    return tmp_path


def test_flag_is_set_and_kept(ext4_dir: Path) -> None:
    d = ext4_dir / "d"
    d.mkdir()
    assert "T" not in lsattr_flags(d)
    assert topdir.spread_children(d) is True
    assert "T" in lsattr_flags(d)
    assert topdir.spread_children(d) is True  # already set: still true, nothing else changed
    assert lsattr_flags(d).count("T") == 1


def test_other_flags_survive(ext4_dir: Path) -> None:
    d = ext4_dir / "d"
    d.mkdir()
    subprocess.run(["chattr", "+d", str(d)], check=True)  # no-dump: an unrelated flag
    topdir.spread_children(d)
    flags = lsattr_flags(d)
    assert "T" in flags and "d" in flags


def test_not_a_dir_or_missing_is_false(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert topdir.spread_children(tmp_path / "f") is False
    assert topdir.spread_children(tmp_path / "missing") is False


def test_filesystem_without_the_flag_is_false() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or subprocess.run(["stat", "-f", "-c", "%T", str(shm)], capture_output=True,
                                          text=True).stdout.strip() != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs")
    assert topdir.spread_children(shm) is False


def test_store_session_and_containers_dirs_spread(ext4_dir: Path) -> None:
    with Store.open(ext4_dir / "root") as store:
        assert "T" in lsattr_flags(store.session_dir())
        containers = Containers(store.root)
        made = containers.create(Container(
            id="", name="c1", image="x", manifest=Descriptor("application/json", Digest.of(b"x"), 1),
            diff_ids=(), argv=("true",), env=(), cwd="/", user="", network="host", created="now"))
        assert "T" in lsattr_flags(containers.dir)
        assert containers.dirs(made.id)[0].is_dir()
