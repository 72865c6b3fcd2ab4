"""copy_tree at any depth (fd by fd) and with what it carries."""

from __future__ import annotations

import os

from minibuild.containers.treecopy import copy_tree

from tests.deeptree import DEEP, chain_depth, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture


def _copy(source, target) -> None:
    src, dst = os.open(source, os.O_RDONLY | os.O_DIRECTORY), os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_tree(src, dst)
    finally:
        os.close(src)
        os.close(dst)


def test_copy_tree_of_10000_levels(fast_tmp):
    make_deep(fast_tmp / "src", bottom=b"end")
    (fast_tmp / "dst").mkdir()
    _copy(fast_tmp / "src", fast_tmp / "dst")
    assert chain_depth(fast_tmp / "dst") == (DEEP, b"end")


def test_copy_tree_keeps_links_modes_and_times(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_text("x")
    os.chmod(src / "a" / "b" / "f", 0o640)
    (src / "a" / "link").symlink_to("/etc")
    os.chmod(src / "a", 0o711)
    os.utime(src / "a", ns=(1, 1_500_000_000_000_000_000))
    dst.mkdir()
    _copy(src, dst)
    assert (dst / "a" / "b" / "f").read_text() == "x"
    assert os.stat(dst / "a" / "b" / "f").st_mode & 0o777 == 0o640
    assert os.readlink(dst / "a" / "link") == "/etc"
    assert os.stat(dst / "a").st_mode & 0o777 == 0o711
    assert os.stat(dst / "a").st_mtime_ns == 1_500_000_000_000_000_000
