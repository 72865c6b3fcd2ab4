"""rootpath: host paths and O_PATH fds inside a root, symlinks never leading out."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from minibuild.errors import BuildError
from minibuild.fs.rootpath import ImagePath, open_in_root, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An image root whose links point at absolute and climbing targets."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root\n")
    (r / "opt/app").mkdir(parents=True)
    (r / "app").symlink_to("/opt/app")
    (r / "up").symlink_to("../../../..")
    (r / "hostetc").symlink_to("/etc")
    (r / "loop").symlink_to("loop")
    return r


def test_resolve_in_root_keeps_every_link_inside(root):
    r = str(root)
    assert resolve_in_root(r, "/app/x") == f"{r}/opt/app/x"
    assert resolve_in_root(r, "/up/etc/passwd") == f"{r}/etc/passwd"
    assert resolve_in_root(r, "/hostetc/passwd") == f"{r}/etc/passwd"
    assert resolve_in_root(r, "/app", follow_last=False) == f"{r}/app"
    assert resolve_in_root(r, "/etc/passwd/x/..") == f"{r}/etc/passwd"  # below a file: missing
    assert resolve_in_root(r, "/") == r
    with pytest.raises(BuildError, match="too many levels of symbolic links in /loop/x"):
        resolve_in_root(r, "/loop/x")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _opened(root: Path, path: str, **kw) -> os.stat_result:
    top = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = open_in_root(top, path, **kw)
    finally:
        os.close(top)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def test_open_in_root_follows_links_inside_the_root(root):
    before = _fds()
    assert _opened(root, "/hostetc/passwd").st_ino == (root / "etc/passwd").stat().st_ino
    assert _opened(root, "/up/app").st_ino == (root / "opt/app").stat().st_ino
    assert _opened(root, "/..").st_ino == root.stat().st_ino
    assert _fds() == before  # every fd of the walk is closed


def test_open_in_root_makes_missing_components_when_asked(root):
    st = _opened(root, "/app/cache/dir", make=True)
    assert stat.S_ISDIR(st.st_mode)
    st = _opened(root, "/run/secrets/token", make=True, file=True)
    assert stat.S_ISREG(st.st_mode) and (root / "run/secrets/token").is_file()
    assert (root / "opt/app/cache/dir").is_dir()  # made through the link, inside the root


def test_open_in_root_raises_for_missing_paths_loops_and_files_as_dirs(root):
    before = _fds()
    with pytest.raises(FileNotFoundError):
        _opened(root, "/nope/x")
    with pytest.raises(OSError) as loop:
        _opened(root, "/loop")
    assert loop.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        _opened(root, "/etc/passwd/x")
    assert _fds() == before


def test_image_path_reports_what_exists(root):
    st = os.lstat(root)
    assert ImagePath(("a",), (st,)).exists and ImagePath(("a",), (st,)).is_dir()
    missing = ImagePath(("a", "b"), (st,))
    assert not missing.exists and not missing.is_dir() and missing.path == "/a/b"
    assert ImagePath((), ()).is_dir() and ImagePath((), ()).path == "/"
    assert not ImagePath(("f",), (os.lstat(root / "etc/passwd"),)).is_dir()
