"""docker-diff rules on hand-made upper and lower dirs (xattr whiteouts: no root needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from minibuild.layer.diffview import Change, changes, lower_children, lower_stat
from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture
from tests.conftest import user_xattrs_work


@pytest.fixture
def dirs(tmp_path):
    if not user_xattrs_work(tmp_path):
        pytest.skip("the temp filesystem has no user xattrs")
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower / "etc", lower / "data" / "sub", lower / "keep", upper):
        d.mkdir(parents=True, exist_ok=True)
    (lower / "etc" / "passwd").write_text("root:x:0:0\n")
    (lower / "etc" / "group").write_text("root:x:0:\n")
    (lower / "data" / "a").write_text("a")
    (lower / "data" / "sub" / "b").write_text("b")
    (lower / "keep" / "k").write_text("k")
    return lower, upper


def copy_up_dir(lower: Path, upper: Path, rel: str) -> Path:
    """What overlay does to a parent dir on copy-up: same mode, owner, mtime."""
    target = upper / rel
    target.mkdir(parents=True, exist_ok=True)
    shutil.copystat(lower / rel, target)
    return target


def whiteout(path: Path) -> None:
    """An xattr whiteout (what overlay writes with `userxattr`)."""
    path.write_bytes(b"")
    os.setxattr(path, "user.overlay.whiteout", b"y")


def lines(upper: Path, *lowers: Path) -> list[str]:
    return [c.line() for c in changes(upper, lowers)]


def test_new_file_in_new_dir_is_a_and_root_is_never_listed(dirs):
    lower, upper = dirs
    (upper / "tmp").mkdir()
    (upper / "tmp" / "file.txt").write_text("data")
    assert lines(upper, lower) == ["A /tmp", "A /tmp/file.txt"]


def test_added_file_makes_its_unchanged_parent_c(dirs):
    lower, upper = dirs
    etc = copy_up_dir(lower, upper, "etc")
    (etc / "hosts.new").write_text("x")
    shutil.copystat(lower / "etc", etc)  # even when the dir's own attributes did not change
    assert lines(upper, lower) == ["C /etc", "A /etc/hosts.new"]


def test_modified_file_is_c_and_an_unchanged_parent_is_not_listed(dirs):
    lower, upper = dirs
    etc = copy_up_dir(lower, upper, "etc")
    (etc / "passwd").write_text("root:x:0:0\nbob:x:1:1\n")
    shutil.copystat(lower / "etc", etc)
    assert lines(upper, lower) == ["C /etc/passwd"]


def test_changed_dir_attributes_are_c(dirs):
    lower, upper = dirs
    keep = copy_up_dir(lower, upper, "keep")
    os.chmod(keep, 0o700)
    assert lines(upper, lower) == ["C /keep"]


def test_whiteout_is_d_and_its_parent_c(dirs):
    lower, upper = dirs
    data = copy_up_dir(lower, upper, "data")
    whiteout(data / "a")
    shutil.copystat(lower / "data", data)
    assert lines(upper, lower) == ["C /data", "D /data/a"]


def test_opaque_dir_lists_hidden_lower_children_as_d(dirs):
    lower, upper = dirs
    data = copy_up_dir(lower, upper, "data")
    os.setxattr(data, "user.overlay.opaque", b"y")
    (data / "a").write_text("new a")
    assert lines(upper, lower) == ["C /data", "C /data/a", "D /data/sub"]


def test_path_whited_out_in_a_lower_layer_counts_as_new(dirs, tmp_path):
    lower, upper = dirs
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    whiteout(top / "etc" / "group")
    etc = copy_up_dir(lower, upper, "etc")
    (etc / "group").write_text("again")
    shutil.copystat(lower / "etc", etc)
    assert lines(upper, top, lower) == ["C /etc", "A /etc/group"]
    assert lower_stat([top, lower], ("etc", "group")) is None
    assert lower_children([top, lower], ("etc",)) == ["passwd"]


def test_symlink_in_a_lower_is_not_followed(dirs):
    lower, _ = dirs
    (lower / "host").symlink_to("/")
    assert lower_stat([lower], ("host", "etc")) is None


def test_opaque_lower_dir_hides_layers_below(dirs, tmp_path):
    lower, _ = dirs
    top = tmp_path / "top"
    (top / "data").mkdir(parents=True)
    os.setxattr(top / "data", "user.overlay.opaque", b"y")
    (top / "data" / "z").write_text("z")
    assert lower_children([top, lower], ("data",)) == ["z"]
    assert lower_stat([top, lower], ("data", "a")) is None
    assert lower_stat([top, lower], ("keep", "k")) is not None


def test_change_line_and_order():
    assert Change("/a", "A").line() == "A /a"
    assert sorted([Change("/b", "A"), Change("/a", "D")])[0].path == "/a"


def test_10000_levels_deep_upper(fast_tmp):
    upper, lower = fast_tmp / "upper", fast_tmp / "lower"
    lower.mkdir()
    make_deep(upper)
    found = changes(upper, [lower])
    assert len(found) == DEEP + 1
    assert found[0] == Change("/d", "A")
    assert found[-1].path.endswith("/d/bottom") and found[-1].path.count("/") == DEEP + 1


def test_a_symlink_to_a_host_dir_is_listed_not_walked(dirs, tmp_path):
    lower, upper = dirs
    host = tmp_path / "host"
    host.mkdir()
    (host / "marker").write_text("secret")
    (upper / "swap").symlink_to(host)
    assert changes(upper, [lower]) == [Change("/swap", "A")]
