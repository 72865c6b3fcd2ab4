"""fd-based walks and removal at any depth (10,000 levels: past PATH_MAX and the recursion limit)."""

from __future__ import annotations

import os

import pytest

from minibuild.fs import dirstack, files

from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture


def test_remove_tree_of_10000_levels(fast_tmp):
    make_deep(fast_tmp / "t")
    files.remove_tree(fast_tmp / "t")
    assert not (fast_tmp / "t").exists()


def test_remove_tree_copes_with_mode_000_dirs_and_links(tmp_path):
    (tmp_path / "t" / "w" / "x").mkdir(parents=True)
    (tmp_path / "t" / "w" / "x" / "f").write_text("x")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "k").write_text("k")
    (tmp_path / "t" / "link").symlink_to(tmp_path / "keep")
    os.chmod(tmp_path / "t" / "w" / "x", 0)
    os.chmod(tmp_path / "t" / "w", 0)
    files.remove_tree(tmp_path / "t")
    files.remove_tree(tmp_path / "missing")
    assert not (tmp_path / "t").exists()
    assert (tmp_path / "keep" / "k").read_text() == "k"


def test_walk_10000_levels_parents_first_then_after(fast_tmp):
    make_deep(fast_tmp)
    seen = [(e.rel.count("/"), e.name, e.after) for e in dirstack.walk(fast_tmp, after=True)]
    assert len(seen) == 2 * DEEP + 1
    assert seen[0] == (0, "d", False)
    assert seen[DEEP - 1] == (DEEP - 1, "d", False)
    assert seen[DEEP] == (DEEP, "bottom", False)
    assert seen[-1] == (0, "d", True)


def test_walk_sorted_and_prune(tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("")
    out = []
    walker = dirstack.Walk(dirstack.DirStack.open(tmp_path))
    for entry in walker:
        out.append(entry.rel)
        if entry.name == "b":
            walker.prune()
    walker.stack.close()
    assert out == ["a", "a/x", "b", "c", "c/x"]


def test_walk_never_follows_a_link(tmp_path):
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "marker").write_text("secret")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "l").symlink_to(tmp_path / "host")
    rels = [e.rel for e in dirstack.walk(tmp_path / "root")]
    assert rels == ["l"]


def test_walk_skips_a_dir_swapped_for_a_link(tmp_path, monkeypatch):
    (tmp_path / "root" / "d").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "marker").write_text("secret")
    walker = dirstack.Walk(dirstack.DirStack.open(tmp_path / "root"))
    rels = []
    for entry in walker:
        rels.append(entry.rel)
        if entry.name == "d":  # between lstat and open, as a racing container would
            os.rename(tmp_path / "root" / "d", tmp_path / "gone")
            os.symlink(tmp_path / "host", tmp_path / "root" / "d")
    walker.stack.close()
    assert rels == ["d"] and walker.skipped == 1


def test_stack_notices_a_moved_ancestor(tmp_path, monkeypatch):
    monkeypatch.setattr(dirstack, "MAX_OPEN", 2)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    with dirstack.DirStack.open(tmp_path) as stack:
        for name in ("a", "b", "c"):
            stack.push(name)
        os.rename(tmp_path / "a" / "b", tmp_path / "other" / "b")
        stack.pop()
        with pytest.raises(dirstack.Moved):
            stack.pop()


def test_shortened_names_an_entry_past_path_max(fast_tmp):
    make_deep(fast_tmp, bottom=b"deep")
    path = str(fast_tmp) + "/d" * DEEP + "/bottom"
    with dirstack.shortened(path) as short:
        assert len(short) < 4096 and os.lstat(short).st_size == 4
        with open(short, "rb") as f:
            assert f.read() == b"deep"
    with dirstack.shortened(os.fsencode(path)) as short:
        assert isinstance(short, bytes) and os.path.exists(short)
    with dirstack.shortened("/etc") as short:
        assert short == "/etc"
