"""walk_source: parents first, sorted, .dockerignore with `!` re-includes, at any depth."""

from __future__ import annotations

from minibuild.build.treewalk import walk_source
from minibuild.dockerfile.dockerignore import IgnoreRules

from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture


def test_walk_source_of_10000_levels(fast_tmp):
    make_deep(fast_tmp / "ctx" / "deep")
    seen: set[str] = set()
    entries = list(walk_source(str(fast_tmp / "ctx"), "deep", None, seen))
    assert len(entries) == DEEP + 1 and entries[-1].relpath.endswith("/d/bottom")
    assert [e.kind for e in entries[:2]] == ["dir", "dir"] and len(seen) == DEEP + 1


def test_an_excluded_dir_shows_only_for_what_is_brought_back(tmp_path):
    for rel in ("a/keep/k.txt", "a/drop/x.txt", "b/y.txt", "c.txt", "e/z.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    rules = IgnoreRules.parse("a\n!a/keep\nb\ne/z.txt\n")
    got = [(e.relpath, e.kind) for e in walk_source(str(tmp_path), ".", rules)]
    assert got == [("a", "dir"), ("a/keep", "dir"), ("a/keep/k.txt", "file"), ("c.txt", "file"),
                   ("e", "dir")]
