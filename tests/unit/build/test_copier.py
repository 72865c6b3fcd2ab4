"""COPY/ADD into a fake image root (no chroot, no root needed)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from minibuild.build.context import BuildContext
from minibuild.build.addarchive import is_tar
from minibuild.build.copier import CopyPlan, apply_copy
from minibuild.fs.rootpath import resolve_in_root
from minibuild.errors import BuildError


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "lib" / "sub").mkdir(parents=True)
    (root / "app.py").write_text("print(1)\n")
    (root / "lib" / "a.py").write_text("a\n")
    (root / "lib" / "b.py").write_text("b\n")
    (root / "lib" / "sub" / "c.txt").write_text("c\n")
    (root / "lib" / "link").symlink_to("a.py")
    (root / "lib" / "out").symlink_to("/etc/passwd")
    (root / "top_link").symlink_to("lib/a.py")
    os.chmod(root / "lib" / "b.py", 0o751)
    os.utime(root / "lib" / "b.py", ns=(12_345_000_000_000, 12_345_000_000_000))
    return root


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    return root


def copy(ctx: Path, image: Path, sources: list[str], dest: str, *, workdir: str = "/",
         chown: str | None = None, chmod: str | None = None, add: bool = False,
         inline: tuple[tuple[str, bytes], ...] = ()) -> None:
    """Select like the engine does, then apply into the fake root."""
    bc = BuildContext(ctx)
    selected = bc.select_sources(sources).sources if sources else ()
    plan = CopyPlan(selected, inline, dest, workdir, chown, chmod, add, bc.ignore)
    apply_copy(plan, root=str(image), context=str(ctx))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- destination rules -------------------------------------------------------------------

COPY_CASES = [
    # (sources, dest, workdir, expected file -> content)
    (["app.py"], "/opt/run.py", "/", {"opt/run.py": "print(1)\n"}),
    (["app.py"], "/opt/", "/", {"opt/app.py": "print(1)\n"}),
    (["app.py"], "/srv", "/", {"srv/app.py": "print(1)\n"}),  # existing dir: goes inside
    (["lib"], "/dst/", "/", {"dst/a.py": "a\n", "dst/sub/c.txt": "c\n"}),  # contents
    (["lib"], "/dst", "/", {"dst/b.py": "b\n"}),  # a dir source makes dest a dir anyway
    (["lib/*.py"], "/w/", "/", {"w/a.py": "a\n", "w/b.py": "b\n"}),
    (["lib/a*"], "/one.py", "/", {"one.py": "a\n"}),  # one wildcard match: dest is a file
    (["app.py", "lib/sub/c.txt"], "/m/", "/", {"m/app.py": "print(1)\n", "m/c.txt": "c\n"}),
    (["app.py"], "conf/", "/app", {"app/conf/app.py": "print(1)\n"}),
    (["app.py"], ".", "/app", {"app/app.py": "print(1)\n"}),
    (["app.py"], "x.py", "/app/", {"app/x.py": "print(1)\n"}),
    (["top_link"], "/t/", "/", {"t/top_link": "a\n"}),  # followed, keeps its own name
    (["."], "/all/", "/", {"all/app.py": "print(1)\n", "all/lib/sub/c.txt": "c\n"}),
]


@pytest.mark.parametrize(("sources", "dest", "workdir", "expected"), COPY_CASES)
def test_copy_destinations(ctx, image, sources, dest, workdir, expected) -> None:
    copy(ctx, image, sources, dest, workdir=workdir)
    for rel, content in expected.items():
        path = image / rel
        assert path.is_file() and not path.is_symlink(), rel
        assert path.read_text() == content
    assert not (image / "dst" / "lib").exists()


def test_dir_copy_exact_tree(ctx, image) -> None:
    copy(ctx, image, ["lib"], "/dst/")
    assert tree(image / "dst") == {"a.py", "b.py", "link", "out", "sub", "sub/c.txt"}


@pytest.mark.parametrize("dest", ["/d", "/d.txt", "rel"])
def test_several_sources_need_dir_dest(ctx, image, dest) -> None:
    with pytest.raises(BuildError, match="When using COPY with more than one source file, "
                                         "the destination must be a directory and end with a /"):
        copy(ctx, image, ["app.py", "lib/a.py"], dest)
    with pytest.raises(BuildError, match="more than one source"):
        copy(ctx, image, ["lib/*.py"], dest)


def test_parents_created_0755(ctx, image) -> None:
    os.umask(0o077)
    try:
        copy(ctx, image, ["app.py"], "/a/b/c/app.py")
    finally:
        os.umask(0o022)
    for rel in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.stat(image / rel).st_mode) == 0o755
        if os.geteuid() == 0:
            assert os.stat(image / rel).st_uid == 0


def test_modes_and_mtimes_preserved(ctx, image) -> None:
    copy(ctx, image, ["lib"], "/dst/")
    st = os.stat(image / "dst" / "b.py")
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert st.st_mtime_ns == 12_345_000_000_000
    sub_src, sub_dst = os.stat(ctx / "lib" / "sub"), os.stat(image / "dst" / "sub")
    assert sub_dst.st_mtime_ns == sub_src.st_mtime_ns  # dir mtime set after its children


def test_chmod_applies_to_files_and_dirs(ctx, image) -> None:
    copy(ctx, image, ["lib"], "/dst/", chmod="0700")
    for rel in ("a.py", "b.py", "sub", "sub/c.txt"):
        assert stat.S_IMODE(os.lstat(image / "dst" / rel).st_mode) == 0o700, rel


def test_symbolic_chmod_applies_to_each_entrys_own_mode(ctx, image) -> None:
    os.chmod(ctx / "lib" / "sub", 0o700)
    copy(ctx, image, ["lib"], "/dst/", chmod="u=rwX,go=rX")  # the reference's example
    for rel, want in (("a.py", 0o644), ("b.py", 0o755), ("sub", 0o755), ("sub/c.txt", 0o644)):
        assert stat.S_IMODE(os.lstat(image / "dst" / rel).st_mode) == want, rel


def test_bad_chmod_is_a_clear_error(ctx, image) -> None:
    with pytest.raises(BuildError, match=r"invalid chmod parameter: 'u\+q'"):
        copy(ctx, image, ["app.py"], "/x", chmod="u+q")


def test_created_dirs_take_an_octal_chmod(ctx, image) -> None:
    # BuildKit's testCopyChmod: `COPY --chmod=770 foo /parent/sub/foo` makes /parent/sub 0770
    copy(ctx, image, ["app.py"], "/parent/sub/foo", chmod="770")
    for rel in ("parent", "parent/sub", "parent/sub/foo"):
        assert stat.S_IMODE(os.stat(image / rel).st_mode) == 0o770, rel
    copy(ctx, image, ["app.py"], "/other/sub/", chmod="+x")
    assert stat.S_IMODE(os.stat(image / "other" / "sub").st_mode) == 0o755


def test_symlinks_inside_dir_stay_links(ctx, image) -> None:
    copy(ctx, image, ["lib"], "/dst/")
    assert os.readlink(image / "dst" / "link") == "a.py"
    assert os.readlink(image / "dst" / "out") == "/etc/passwd"  # data, even pointing out


def test_wildcard_symlink_copies_its_target(ctx, image) -> None:
    # BuildKit follows a wildcard's matches (FollowSymlinks): the content lands under the name
    copy(ctx, image, ["lib/li*"], "/w/")
    assert not (image / "w" / "link").is_symlink()
    assert (image / "w" / "link").read_text() == "a\n"


def test_copy_replaces_existing_file_and_link(ctx, image) -> None:
    (image / "srv" / "app.py").write_text("old, longer content\n")
    other = image / "srv" / "hard"
    os.link(image / "srv" / "app.py", other)
    (image / "etc" / "target").write_text("keep\n")
    (image / "srv" / "a.py").symlink_to("../etc/target")
    copy(ctx, image, ["app.py", "lib/a.py"], "/srv/")
    assert (image / "srv" / "app.py").read_text() == "print(1)\n"
    assert other.read_text() == "old, longer content\n"  # replaced, not written through
    assert (image / "etc" / "target").read_text() == "keep\n"
    assert (image / "srv" / "a.py").read_text() == "a\n" and not (image / "srv" / "a.py").is_symlink()


def test_file_over_dir_in_tree_is_an_error(ctx, image) -> None:
    (image / "dst" / "a.py").mkdir(parents=True)
    with pytest.raises(BuildError, match="cannot overwrite directory /dst/a.py"):
        copy(ctx, image, ["lib"], "/dst/")


def test_dest_dir_blocked_by_file(ctx, image) -> None:
    (image / "blocker").write_text("x")
    with pytest.raises(BuildError, match="/blocker exists and is not a directory"):
        copy(ctx, image, ["app.py"], "/blocker/sub/")


def test_image_symlink_followed_inside_root(ctx, image, tmp_path) -> None:
    (image / "opt" / "app").mkdir(parents=True)
    (image / "app").symlink_to("/opt/app")  # absolute: must mean <root>/opt/app
    copy(ctx, image, ["app.py", "lib"], "/app/")
    assert (image / "opt" / "app" / "app.py").read_text() == "print(1)\n"
    assert (image / "opt" / "app" / "sub" / "c.txt").is_file()
    assert os.readlink(image / "app") == "/opt/app"


def test_image_dangling_dir_link_created_inside_root(ctx, image) -> None:
    (image / "data").symlink_to("/var/lib/data")
    copy(ctx, image, ["app.py"], "/data/")
    assert (image / "var" / "lib" / "data" / "app.py").is_file()


def test_tree_writes_through_image_dir_links(ctx, image) -> None:
    (image / "usr" / "lib").mkdir(parents=True)
    (image / "dst").mkdir()
    (image / "dst" / "sub").symlink_to("/usr/lib")  # like /lib -> usr/lib
    copy(ctx, image, ["lib"], "/dst/")
    assert (image / "usr" / "lib" / "c.txt").read_text() == "c\n"
    assert (image / "dst" / "sub").is_symlink()


def test_heredoc_inline_files(ctx, image) -> None:
    copy(ctx, image, [], "/etc/motd", inline=(("EOF", b"hello\n"),))
    assert (image / "etc" / "motd").read_bytes() == b"hello\n"
    assert stat.S_IMODE(os.stat(image / "etc" / "motd").st_mode) == 0o644
    copy(ctx, image, [], "/h/", inline=(("one", b"1"), ("two", b"2")))
    assert tree(image / "h") == {"one", "two"}


def test_dockerignore_applies_while_copying(ctx, image) -> None:
    (ctx / ".dockerignore").write_text("**/*.txt\nlib/b.py\n")
    copy(ctx, image, ["."], "/all/")
    assert tree(image / "all" / "lib") == {"a.py", "link", "out", "sub"}  # sub stays, empty
    # `!dir` re-includes what a parent-matching exception covers, as in Docker
    (ctx / ".dockerignore").write_text("**/*.txt\nlib/b.py\n!lib/sub\n")
    copy(ctx, image, ["."], "/again/")
    assert tree(image / "again" / "lib") == {"a.py", "link", "out", "sub", "sub/c.txt"}


def test_dockerignore_exception_in_excluded_dir(ctx, image) -> None:
    (ctx / ".dockerignore").write_text("lib\n!lib/sub/c.txt\n")
    copy(ctx, image, ["."], "/all/")
    assert tree(image / "all") == {".dockerignore", "app.py", "top_link", "lib", "lib/sub",
                                   "lib/sub/c.txt"}


def test_big_file_copied_whole(ctx, image) -> None:
    data = os.urandom(3 << 20) + b"tail"
    (ctx / "big.bin").write_bytes(data)
    copy(ctx, image, ["big.bin"], "/big.bin")
    assert (image / "big.bin").read_bytes() == data


def test_chown_numeric_parses(ctx, image) -> None:
    if os.geteuid() != 0:
        with pytest.raises(BuildError, match="cannot chown"):
            copy(ctx, image, ["app.py"], "/x", chown="4321")
        return
    copy(ctx, image, ["app.py"], "/x", chown="4321")
    assert (os.stat(image / "x").st_uid, os.stat(image / "x").st_gid) == (4321, 4321)


def test_chown_unknown_name(ctx, image) -> None:
    (image / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    with pytest.raises(BuildError, match="--chown=nobody.*unable to find user nobody"):
        copy(ctx, image, ["app.py"], "/x", chown="nobody")


def test_no_sources_at_all(ctx, image) -> None:
    with pytest.raises(BuildError, match="no source files"):
        copy(ctx, image, [], "/x")


# -- resolve_in_root ---------------------------------------------------------------------


def test_resolve_in_root(tmp_path) -> None:
    root = tmp_path / "r"
    (root / "opt" / "app").mkdir(parents=True)
    (root / "app").symlink_to("/opt/app")
    (root / "up").symlink_to("../../../..")
    (root / "loop").symlink_to("loop")
    r = str(root)
    assert resolve_in_root(r, "/app/x") == f"{r}/opt/app/x"
    assert resolve_in_root(r, "/up/etc/passwd") == f"{r}/etc/passwd"  # `..` stops at root
    assert resolve_in_root(r, "/../../etc") == f"{r}/etc"
    assert resolve_in_root(r, "/app", follow_last=False) == f"{r}/app"
    assert resolve_in_root(r, "/") == r
    with pytest.raises(BuildError, match="too many levels"):
        resolve_in_root(r, "/loop/x")


# -- ADD ---------------------------------------------------------------------------------


def tar_bytes(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """A tar with (name, type, data-or-linkname) members; type in file|dir|sym|hard."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000
            info.uid, info.gid = os.getuid(), os.getgid()
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tf.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tf.addfile(info)
            else:
                payload = data if isinstance(data, bytes) else data.encode()
                info.size, info.mode = len(payload), 0o640
                tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


GOOD_TAR = [("pkg", "dir", ""), ("pkg/bin", "dir", ""), ("pkg/bin/tool", "file", b"#!/bin/sh\n"),
            ("pkg/readme", "file", b"hi\n"), ("pkg/link", "sym", "readme"),
            ("pkg/hard", "hard", "pkg/readme"), ("./noparent/deep/f", "file", b"f\n")]

COMPRESS = {
    "tar": lambda b: b,
    "tar.gz": lambda b: gzip.compress(b, mtime=0),
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar.zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_add_extracts_archives(ctx, image, suffix) -> None:
    # The name lies on purpose: detection is by magic number.
    (ctx / "payload.bin").write_bytes(COMPRESS[suffix](tar_bytes(GOOD_TAR)))
    assert is_tar(str(ctx / "payload.bin"))
    copy(ctx, image, ["payload.bin"], "/opt/x", add=True)
    out = image / "opt" / "x"
    assert (out / "pkg" / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(os.stat(out / "pkg" / "readme").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(out / "pkg" / "bin").st_mode) == 0o750
    assert os.stat(out / "pkg" / "bin").st_mtime == 1_000_000
    assert os.readlink(out / "pkg" / "link") == "readme"
    assert os.stat(out / "pkg" / "hard").st_ino == os.stat(out / "pkg" / "readme").st_ino
    assert (out / "noparent" / "deep" / "f").read_bytes() == b"f\n"


def test_copy_does_not_extract(ctx, image) -> None:
    (ctx / "a.tar").write_bytes(tar_bytes(GOOD_TAR))
    copy(ctx, image, ["a.tar"], "/opt/")
    assert (image / "opt" / "a.tar").read_bytes() == tar_bytes(GOOD_TAR)


@pytest.mark.parametrize("content", [b"plain text, not a tar\n", gzip.compress(b"not a tar", mtime=0), b""])
def test_add_non_archive_copied_as_is(ctx, image, content) -> None:
    (ctx / "data.tar.gz").write_bytes(content)
    copy(ctx, image, ["data.tar.gz"], "/d/", add=True)
    assert (image / "d" / "data.tar.gz").read_bytes() == content


HOSTILE = [
    [("../evil", "file", b"x")],
    [("a/../../evil", "file", b"x")],
    [("lnk", "sym", "/"), ("lnk/evil", "file", b"x")],  # through an absolute link to the root
    [("lnk", "sym", "../.."), ("lnk/evil", "file", b"x")],
    [("up", "sym", "../../evil")],  # a relative link climbing out
    [("h", "hard", "../../etc/passwd")],
]


@pytest.mark.parametrize("members", HOSTILE)
def test_add_refuses_hostile_archives(ctx, image, members) -> None:
    (ctx / "bad.tar").write_bytes(tar_bytes(members))
    (image / "opt").mkdir()
    before = tree(image)
    with pytest.raises(BuildError, match="ADD failed: archive .*(escaping|outside)"):
        copy(ctx, image, ["bad.tar"], "/opt/x/", add=True)
    assert not (image / "evil").exists() and not (image / "opt" / "evil").exists()
    assert not (image.parent / "evil").exists()
    assert {p for p in tree(image) - before if not p.startswith("opt/x")} == set()


def test_add_url_refused(ctx) -> None:
    with pytest.raises(BuildError, match=r"ADD failed: ftp://example.com/x.tar.gz: only http\(s\)"):
        BuildContext(ctx).select_sources(["ftp://example.com/x.tar.gz"], verb="ADD")


def _copy_flags(ctx: Path, image: Path, sources: list[str], dest: str, *,
                exclude: tuple[str, ...] = (), parents: bool = False, add: bool = False) -> None:
    bc = BuildContext(ctx)
    selected = bc.select_sources(sources, parents=parents).sources
    plan = CopyPlan(selected, (), dest, "/", None, None, add, bc.ignore, exclude=exclude,
                    parents=parents)
    apply_copy(plan, root=str(image), context=str(ctx))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


@pytest.fixture
def tree_ctx(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel in ("x/a.txt", "y/a.txt", "x/y/a.txt", "x/y/b.txt", "src/a.txt", "src/x/b.txt",
                "src/x/y/c.txt", "src/x/y/d.md", "home.txt", "home.md", "homer.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    os.chmod(root / "x", 0o750)
    return root


def test_parents_reference_examples(tree_ctx, image) -> None:
    # The three examples of the reference's `COPY --parents`
    _copy_flags(tree_ctx, image, ["./x/a.txt", "./y/a.txt"], "/no_parents/")
    _copy_flags(tree_ctx, image, ["./x/a.txt", "./y/a.txt"], "/parents/", parents=True)
    assert _files(image / "no_parents") == {"a.txt"}
    assert _files(image / "parents") == {"x/a.txt", "y/a.txt"}
    assert stat.S_IMODE(os.stat(image / "parents" / "x").st_mode) == 0o750  # the context dir's
    _copy_flags(tree_ctx, image, ["./x/./y/*.txt"], "/pivot/", parents=True)
    assert _files(image / "pivot") == {"y/a.txt", "y/b.txt"}
    _copy_flags(tree_ctx, image, ["./src/**/*.txt"], "/star/", parents=True)
    assert _files(image / "star") == {"src/a.txt", "src/x/b.txt", "src/x/y/c.txt"}


def test_parents_dir_and_missing_path(tree_ctx, image) -> None:
    _copy_flags(tree_ctx, image, ["src/x"], "/d", parents=True)  # dest is a dir, slash or not
    assert _files(image / "d") == {"src/x/b.txt", "src/x/y/c.txt", "src/x/y/d.md"}
    with pytest.raises(BuildError, match="file not found"):
        _copy_flags(tree_ctx, image, ["src/nope.txt"], "/d/", parents=True)


def test_exclude_reference_examples(tree_ctx, image) -> None:
    # The reference: `COPY --exclude=*.txt hom* /mydir/`, then with --exclude=*.md as well.
    # BuildKit matches --exclude only below a copied dir, so there home.txt would still be
    # copied; the reference says matching files are not copied: we follow the reference.
    _copy_flags(tree_ctx, image, ["hom*"], "/mydir/", exclude=("*.txt",))
    assert _files(image / "mydir") == {"home.md", "homer.py"}
    _copy_flags(tree_ctx, image, ["hom*"], "/two/", exclude=("*.txt", "*.md"))
    assert _files(image / "two") == {"homer.py"}


def test_exclude_matches_below_the_copied_dir(tree_ctx, image) -> None:
    # BuildKit's testExcludedFilesOnCopy: patterns are relative to each copied dir
    _copy_flags(tree_ctx, image, ["."], "/1/", exclude=("*/*.txt",))
    assert "x/a.txt" not in _files(image / "1") and "home.txt" in _files(image / "1")
    _copy_flags(tree_ctx, image, ["src/"], "/3/", exclude=("**/*.txt", "!x/y/c.txt"))
    assert _files(image / "3") == {"x/y/c.txt", "x/y/d.md"}
    _copy_flags(tree_ctx, image, ["src*"], "/6/", exclude=("*",))
    assert _files(image / "6") == set() and (image / "6").is_dir()
    _copy_flags(tree_ctx, image, ["src/./x"], "/p/", parents=True, exclude=("x/y",))
    assert _files(image / "p") == {"x/b.txt"}


def test_add_several_archives_each_unpacked(tmp_path, image) -> None:
    ctx = tmp_path / "arch"
    ctx.mkdir()
    for name in ("one", "two"):
        with tarfile.open(ctx / f"{name}.tar", "w") as tf:
            data = name.encode()
            info = tarfile.TarInfo(f"{name}/file")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    _copy_flags(ctx, image, ["*.tar"], "/dest", add=True)
    assert _files(image / "dest") == {"one/file", "two/file"}


def test_add_at_root_keeps_a_link_climbing_past_the_top(ctx, image) -> None:
    # Docker unpacks in a chroot at the destination: at `/`, `../tmp/x` is `/tmp/x`, nothing
    # escapes. The link stays a link; a member written through it lands inside the root.
    (image / "tmp").mkdir()
    (ctx / "t.tar").write_bytes(tar_bytes([("link", "sym", "../tmp/x"), ("dir", "sym", "../../tmp"),
                                           ("dir/inside", "file", b"in\n")]))
    copy(ctx, image, ["t.tar"], "/", add=True)
    assert os.readlink(image / "link") == "../tmp/x"
    assert (image / "tmp" / "inside").read_bytes() == b"in\n"
    assert not (image.parent / "tmp").exists()


def test_add_at_root_still_refuses_writes_out_of_the_root(ctx, image) -> None:
    (ctx / "t.tar").write_bytes(tar_bytes([("../evil", "file", b"x")]))
    with pytest.raises(BuildError, match="escaping"):
        copy(ctx, image, ["t.tar"], "/", add=True)
    assert not (image.parent / "evil").exists()


def test_parents_excluded_source_makes_no_dirs(tree_ctx, image) -> None:
    _copy_flags(tree_ctx, image, ["./src/**/*.txt"], "/e/", parents=True, exclude=("src/x",))
    assert _files(image / "e") == {"src/a.txt"} and not (image / "e" / "src" / "x").exists()
