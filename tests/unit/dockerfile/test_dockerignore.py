"""Docker's .dockerignore semantics, case by case."""

from __future__ import annotations

import re

import pytest

from minibuild.dockerfile.dockerignore import IgnoreRules, glob_to_regex, has_glob, ignore_files
from minibuild.errors import BuildError

CASES = [
    # (dockerignore text, path, ignored?)
    ("foo", "foo", True),
    ("foo", "foo/bar/baz", True),  # a matched dir excludes everything below it
    ("foo", "foobar", False),
    ("foo", "x/foo", False),  # patterns are anchored at the context root
    ("*.log", "a.log", True),
    ("*.log", "dir/a.log", False),  # `*` does not cross `/`
    ("*/*.log", "dir/a.log", True),
    ("**/*.log", "a.log", True),
    ("**/*.log", "a/b/c.log", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**", "a/x", True),
    ("a/**", "a", False),
    ("?.txt", "a.txt", True),
    ("?.txt", "ab.txt", False),
    ("[a-c].txt", "b.txt", True),
    ("[^a-c].txt", "b.txt", False),
    ("[^a-c].txt", "d.txt", True),
    ("/foo/", "foo/x", True),  # leading and trailing slashes are cleaned
    ("./foo", "foo", True),
    ("foo/../bar", "bar", True),
    ("# comment\nfoo", "# comment", False),
    (" foo ", "foo", True),  # surrounding spaces trimmed
    ("\\*.txt", "*.txt", True),  # escaped star is literal
    ("\\*.txt", "a.txt", False),
    ("*.md\n!README.md", "README.md", False),  # `!` re-includes
    ("*.md\n!README.md", "CHANGES.md", True),
    ("!README.md\n*.md", "README.md", True),  # last match wins
    ("docs\n!docs/keep.txt", "docs/keep.txt", False),
    ("docs\n!docs/keep.txt", "docs/other.txt", True),
    ("**\n!src", "src/main.py", False),
    ("**\n!src", "other", True),
    ("", "anything", False),
]


@pytest.mark.parametrize(("text", "path", "expected"), CASES)
def test_ignored(text: str, path: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).ignored(path) is expected


def test_load_reads_context_file(tmp_path) -> None:
    (tmp_path / ".dockerignore").write_text("node_modules\n!node_modules/keep\n")
    rules = IgnoreRules.load(tmp_path)
    assert rules.ignored("node_modules/x/y")
    assert not rules.ignored("node_modules/keep")
    assert rules.has_exceptions


def test_load_without_file_ignores_nothing(tmp_path) -> None:
    rules = IgnoreRules.load(tmp_path)
    assert rules.patterns == () and not rules.ignored("x")


def test_context_root_never_ignored() -> None:
    assert not IgnoreRules.parse("*\n**").ignored(".")


def test_bare_bang_is_an_error() -> None:
    with pytest.raises(BuildError, match="illegal exclusion"):
        IgnoreRules.parse("foo\n!\n")


def test_bad_class_names_the_line() -> None:
    with pytest.raises(BuildError) as info:
        IgnoreRules.parse("ok\n[abc\n")
    assert info.value.line == 2


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("*", ".hidden", True),  # Go's Match, unlike a shell, matches dotfiles
    ("a?c", "abc", True),
    ("[]a]", "]", True),
    ("[a-]", "-", True),
    ("a[&&]b", "a&b", True),
    ("*", "a/b", False),
])
def test_glob_to_regex(pattern: str, name: str, expected: bool) -> None:
    assert bool(re.fullmatch(glob_to_regex(pattern), name)) is expected


def test_has_glob() -> None:
    assert has_glob("a*") and has_glob("[ab]") and has_glob("x?")
    assert not has_glob("plain/path") and not has_glob(r"a\*b")


def test_the_buildfile_s_own_ignore_file_wins_over_the_context_s(tmp_path):
    # BuildKit's dockerui: `<Dockerfile>.dockerignore` beside the Dockerfile, else .dockerignore
    (tmp_path / ".dockerignore").write_text("context-rule\n")
    (tmp_path / "sub").mkdir()
    buildfile = tmp_path / "sub" / "app.Dockerfile"
    assert ignore_files(tmp_path, buildfile) == (
        tmp_path / "sub" / "app.Dockerfile.dockerignore", tmp_path / ".dockerignore")
    assert ignore_files(tmp_path) == (tmp_path / ".dockerignore",)
    assert IgnoreRules.load(tmp_path, buildfile).ignored("context-rule")
    (tmp_path / "sub" / "app.Dockerfile.dockerignore").write_text("own-rule\n")
    rules = IgnoreRules.load(tmp_path, buildfile)
    assert rules.ignored("own-rule") and not rules.ignored("context-rule")
    assert IgnoreRules.load(tmp_path).ignored("context-rule")


def test_a_pattern_of_fixed_depth_checks_one_prefix_of_a_deep_path():
    rules = IgnoreRules.parse("node_modules\nsrc/*.log\n")
    deep = "/d" * 10_000
    assert rules.ignored("node_modules" + deep) and rules.ignored("src/x.log" + deep)
    assert not rules.ignored("src" + deep + "/x.log") and not rules.ignored("a/node_modules")
