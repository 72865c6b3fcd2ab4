"""Atomic writes and tree removal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minibuild.fs import files


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    files.write_atomic(target, b"new")
    files.write_atomic(tmp_path / "summary.json", b"{}", durable=False)
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["index.json", "summary.json"]


def test_write_atomic_mode_is_that_of_a_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "secret", b"x", mode=0o600)
        files.write_atomic(tmp_path / "plain", b"x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "secret").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "plain").st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new")
    assert os.listdir(tmp_path) == ["f"] and target.read_bytes() == b"old"


def test_temp_names_sit_beside_their_file_as_dot_files():
    name = files.temp_name(Path("/s/oci/index.json"))
    assert str(name.parent) == "/s/oci" and name.name.startswith(f".index.json.{os.getpid()}.")


def test_remove_tree_copes_with_mode_000_dirs_and_missing_paths(tmp_path):
    tree = tmp_path / "scratch"
    (tree / "work" / "work").mkdir(parents=True)  # overlay leaves work/work empty, mode 000
    (tree / "upper" / "etc").mkdir(parents=True)
    (tree / "upper" / "etc" / "f").write_text("x")
    os.chmod(tree / "work" / "work", 0)
    files.remove_tree(tree)
    assert not tree.exists()
    files.remove_tree(tmp_path / "never-was")  # nothing to do
