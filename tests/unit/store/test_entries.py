"""Bounded dirs of JSON entries (memos, parsed Buildfiles, COPY reuse hints)."""

from __future__ import annotations

import os

from minibuild.store import entries


def _entry(directory, name: str, mtime: int) -> None:
    path = directory / name
    path.write_text("{}")
    os.utime(path, ns=(mtime, mtime))


def test_trim_keeps_the_newest_entries_and_leaves_other_files(tmp_path):
    for i in range(5):
        _entry(tmp_path, f"e{i}.json", 1_000_000_000 * (10 - i))  # e0 is the newest
    (tmp_path / ".tmp-x").write_text("partial")
    entries.trim(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-x", "e0.json", "e1.json"]
    entries.trim(tmp_path, 2)  # at the bound: nothing more goes
    assert len(list(tmp_path.iterdir())) == 3


def test_empty_removes_every_file_and_counts_entries(tmp_path):
    for i in range(3):
        _entry(tmp_path, f"e{i}.json", 1)
    (tmp_path / ".tmp-x").write_text("partial")
    assert entries.empty(tmp_path) == 3
    assert list(tmp_path.iterdir()) == []
    assert entries.empty(tmp_path / "missing") == 0
