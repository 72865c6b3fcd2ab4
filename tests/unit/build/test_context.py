"""Source selection in the build context and its content key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from minibuild.build import hashcache
from minibuild.build.context import BuildContext, Source, is_url
from minibuild.build.treewalk import walk_source
from minibuild.errors import BuildError


def make_tree(root: Path, files: dict[str, str]) -> None:
    """Create files (content) and symlinks ("-> target") under root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("-> "):
            path.symlink_to(content[3:])
        else:
            path.write_text(content)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    make_tree(root, {
        "app.py": "print(1)\n",
        "lib/a.py": "a\n",
        "lib/b.py": "b\n",
        "lib/sub/c.txt": "c\n",
        "lib/link": "-> a.py",
        "lib/out": "-> /etc/passwd",  # inside a dir: just data
        "top_link": "-> lib/a.py",
        "escape": "-> ../outside.txt",
        "dirlink": "-> lib",
    })
    (tmp_path / "outside.txt").write_text("secret\n")
    return root


def names(selection) -> list[tuple[str, str, bool, str]]:
    return [(s.relpath, s.kind, s.from_wildcard, s.dest_name) for s in selection.sources]


def test_plain_file_and_dir(ctx: Path) -> None:
    sel = BuildContext(ctx).select_sources(["app.py", "lib"])
    assert names(sel) == [("app.py", "file", False, "app.py"), ("lib", "dir", False, "lib")]
    assert sel.files == 4  # app.py, a.py, b.py, sub/c.txt (links are not counted)
    assert sel.bytes == len("print(1)\n") + 6


def test_root_and_leading_slash(ctx: Path) -> None:
    bc = BuildContext(ctx)
    assert names(bc.select_sources(["."])) == [(".", "dir", False, ".")]
    assert names(bc.select_sources(["/app.py"])) == [("app.py", "file", False, "app.py")]
    assert names(bc.select_sources(["lib/../app.py"])) == [("app.py", "file", False, "app.py")]


def test_wildcards_per_component(ctx: Path) -> None:
    bc = BuildContext(ctx)
    assert names(bc.select_sources(["lib/*.py"])) == [
        ("lib/a.py", "file", True, "a.py"), ("lib/b.py", "file", True, "b.py")]
    assert names(bc.select_sources(["l?b/s*/c.[st]xt"])) == [("lib/sub/c.txt", "file", True, "c.txt")]
    assert [s.relpath for s in bc.select_sources(["*.py"]).sources] == ["app.py"]


def test_wildcard_follows_symlinks(ctx: Path) -> None:
    # BuildKit copies a wildcard's matches with FollowSymlinks: the target's content, under
    # the link's name; a link leading out of the context is refused as a named one is.
    sel = BuildContext(ctx).select_sources(["lib/l*"])
    assert names(sel) == [("lib/a.py", "file", True, "link")]
    with pytest.raises(BuildError, match="outside the build context"):
        BuildContext(ctx).select_sources(["lib/o*"])


def test_empty_wildcard_beside_a_match(ctx: Path) -> None:
    # BuildKit's testEmptyWildcard: `COPY foo nomatch* /` copies foo.
    bc = BuildContext(ctx)
    assert [s.relpath for s in bc.select_sources(["app.py", "nomatch*"]).sources] == ["app.py"]
    with pytest.raises(BuildError, match="no source files were specified"):
        bc.select_sources(["nomatch*", "none*"])


def test_wildcard_skips_sockets_and_fifos(ctx: Path) -> None:
    os.mkfifo(ctx / "app.fifo")
    assert [s.relpath for s in BuildContext(ctx).select_sources(["app.*"]).sources] == ["app.py"]


def test_top_level_symlink_followed_inside_context(ctx: Path) -> None:
    bc = BuildContext(ctx)
    assert names(bc.select_sources(["top_link"])) == [("lib/a.py", "file", False, "top_link")]
    assert names(bc.select_sources(["dirlink"])) == [("lib", "dir", False, "dirlink")]
    assert names(bc.select_sources(["dirlink/b.py"])) == [("lib/b.py", "file", False, "b.py")]


def test_symlink_escaping_refused(ctx: Path) -> None:
    with pytest.raises(BuildError, match="outside the build context"):
        BuildContext(ctx).select_sources(["escape"])
    with pytest.raises(BuildError, match="outside the build context"):
        BuildContext(ctx).select_sources(["lib/out"])  # named directly, it is followed


@pytest.mark.parametrize("pattern", ["..", "../outside.txt", "lib/../../outside.txt"])
def test_dotdot_refused(ctx: Path, pattern: str) -> None:
    with pytest.raises(BuildError, match=r"outside the build context"):
        BuildContext(ctx).select_sources([pattern])


def test_missing_source_message(ctx: Path) -> None:
    with pytest.raises(BuildError) as info:
        BuildContext(ctx).select_sources(["nope.txt"])
    assert info.value.message == ("COPY failed: file not found in build context or excluded by "
                                  ".dockerignore: stat nope.txt: file does not exist")


def test_wildcard_matching_nothing(ctx: Path) -> None:
    with pytest.raises(BuildError, match="no source files were specified"):
        BuildContext(ctx).select_sources(["*.rs"])


def test_url_refused(ctx: Path) -> None:
    assert is_url("https://example.com/x.tgz") and not is_url("dir/x:y")
    # http(s) and git sources are fetched by ADD (remoteadd.py) and never reach the context.
    with pytest.raises(BuildError, match="only http\\(s\\) URLs and git repositories"):
        BuildContext(ctx).select_sources(["ftp://example.com/a"], verb="ADD")
    with pytest.raises(BuildError, match="source can't be a URL for COPY"):
        BuildContext(ctx).select_sources(["http://example.com/a"])


def test_dockerignore_excludes(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("lib/sub\n**/b.py\napp.py\n")
    bc = BuildContext(ctx)
    sel = bc.select_sources(["lib"])
    with pytest.raises(BuildError, match="excluded by .dockerignore"):
        bc.select_sources(["app.py"])
    with pytest.raises(BuildError, match="excluded by .dockerignore"):
        bc.select_sources(["lib/sub/c.txt"])
    with pytest.raises(BuildError, match="no source files"):
        bc.select_sources(["*.py"])
    assert sel.files == 1  # only lib/a.py is left
    walked = [e.relpath for e in walk_source(str(ctx), "lib", bc.ignore)]
    assert walked == ["a.py", "link", "out"]


def test_dockerignore_exception_inside_excluded_dir(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("lib\n!lib/sub/c.txt\n")
    bc = BuildContext(ctx)
    walked = [e.relpath for e in walk_source(str(ctx), ".", bc.ignore)]
    assert "lib/sub/c.txt" in walked and "lib/a.py" not in walked
    assert walked.index("lib") < walked.index("lib/sub") < walked.index("lib/sub/c.txt")
    assert names(bc.select_sources(["lib/sub/c.txt"])) == [("lib/sub/c.txt", "file", False, "c.txt")]


def test_symlink_to_excluded_file_not_found(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("lib/a.py\n")
    with pytest.raises(BuildError, match="excluded by .dockerignore"):
        BuildContext(ctx).select_sources(["top_link"])


# -- the content key ---------------------------------------------------------------------


def key(root: Path, patterns=(".",)) -> str:
    return str(BuildContext(root).select_sources(list(patterns)).content_key)


def test_key_ignores_mtime_but_not_content(ctx: Path) -> None:
    before = key(ctx)
    for path in ctx.rglob("*"):
        os.utime(path, (1, 1), follow_symlinks=False)
    assert key(ctx) == before
    (ctx / "lib" / "a.py").write_text("A\n")  # same size
    assert key(ctx) != before


def test_key_sees_mode_names_and_link_targets(ctx: Path) -> None:
    base = key(ctx)
    os.chmod(ctx / "app.py", 0o755)
    assert key(ctx) != base
    os.chmod(ctx / "app.py", 0o644)
    (ctx / "lib" / "link").unlink()
    (ctx / "lib" / "link").symlink_to("b.py")
    assert key(ctx) != base


def test_key_follows_dockerignore(ctx: Path) -> None:
    base = key(ctx)
    (ctx / ".dockerignore").write_text("lib/sub\n")
    ignored = key(ctx)
    assert ignored != base  # c.txt left the selection (and .dockerignore joined it)
    (ctx / "lib" / "sub" / "c.txt").write_text("changed\n")
    assert key(ctx) == ignored  # an excluded file cannot bust the cache


def test_key_depends_on_dest_name(ctx: Path) -> None:
    assert key(ctx, ["top_link"]) != key(ctx, ["lib/a.py"])


def age(path: Path) -> None:
    """Make a file look older than the racy window (mtime only; ctime is the kernel's)."""
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))


def test_stat_cache_hashes_each_file_once(ctx: Path, monkeypatch) -> None:
    for path in ctx.rglob("*"):
        if path.is_file() and not path.is_symlink():
            age(path)
    time.sleep(0.15)  # leave the racy window behind for the ctimes set above
    bc = BuildContext(ctx)
    reads: list[str] = []
    real = hashcache.hashlib.file_digest
    monkeypatch.setattr(hashcache.hashlib, "file_digest",
                        lambda f, algo: (reads.append(f.name), real(f, algo))[1])
    first = bc.select_sources(["lib"]).content_key
    count = len(reads)
    assert count == 3
    assert bc.select_sources(["lib"]).content_key == first
    assert len(reads) == count  # second COPY of the same tree: no re-read


def test_stat_cache_catches_same_size_and_mtime(ctx: Path) -> None:
    target = ctx / "lib" / "a.py"
    age(target)
    time.sleep(0.15)
    bc = BuildContext(ctx)
    first = bc.select_sources(["lib"]).content_key
    st = os.stat(target)
    target.write_text("A\n")  # one byte differs, same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime moves
    assert os.stat(target).st_size == st.st_size
    assert os.stat(target).st_mtime_ns == st.st_mtime_ns
    assert bc.select_sources(["lib"]).content_key != first


def test_racy_fresh_file_is_not_cached(ctx: Path) -> None:
    bc = BuildContext(ctx)
    bc.select_sources(["app.py"])
    assert str(ctx / "app.py") not in bc.hashes  # written just now: could change unseen


def test_source_dest_name_default() -> None:
    assert Source("a/b.txt", "file", False).dest_name == "b.txt"


def test_parents_key_covers_the_modes_of_the_dirs_it_copies(ctx: Path) -> None:
    bc = BuildContext(ctx)
    first = bc.select_sources(["lib/a.py"], parents=True)
    assert [(s.relpath, s.name, s.base) for s in first.sources] == [("lib/a.py", "lib/a.py", ".")]
    os.chmod(ctx / "lib", 0o700)
    assert BuildContext(ctx).select_sources(["lib/a.py"], parents=True).content_key != first.content_key
