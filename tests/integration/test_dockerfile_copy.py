"""Issue 15, "COPY and ADD" (local context): --parents, --exclude, symbolic --chmod, the dirs a
COPY creates, wildcards, archives, COPY --from ownership and --link, from the Dockerfile
reference's own examples (moby/buildkit frontend/dockerfile/docs/reference.md) where it has them.

Where BuildKit does something the reference does not say, the test says which one we follow.
The images are read back with umoci (an outside unpacker) where that adds a check.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context
from tests.integration.test_build import umoci_unpack

pytestmark = pytest.mark.integration


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_parents_reference_examples(mb: Minibuild, tmp_path):
    ctx = write_context(tmp_path / "ctx", """FROM scratch
COPY ./x/a.txt ./y/a.txt /no_parents/
COPY --parents ./x/a.txt ./y/a.txt /parents/
COPY --parents ./x/./y/*.txt /pivot/
COPY --parents ./src/**/*.txt /star/
""", {"x/a.txt": "xa", "y/a.txt": "ya", "x/y/a.txt": "xya", "x/y/b.txt": "xyb",
      "src/a.txt": "a", "src/x/b.txt": "b", "src/x/y/c.txt": "c", "src/x/y/d.md": "d"})
    mb.build(ctx, "-t", "parents:1")
    root = umoci_unpack(mb, "parents:1", tmp_path)
    assert files(root / "no_parents") == {"a.txt"}  # y/a.txt silently overwrote x/a.txt
    assert (root / "no_parents" / "a.txt").read_text() == "ya"
    assert files(root / "parents") == {"x/a.txt", "y/a.txt"}
    assert files(root / "pivot") == {"y/a.txt", "y/b.txt"}
    assert files(root / "star") == {"src/a.txt", "src/x/b.txt", "src/x/y/c.txt"}


def test_exclude_reference_examples(mb: Minibuild, tmp_path):
    # The reference: "Files matching any of the specified --exclude patterns are not copied,
    # even if their paths match the pattern specified in <src>". BuildKit matches --exclude only
    # below a copied dir (home.txt, named by hom*, would be copied there): we follow the reference.
    ctx = write_context(tmp_path / "ctx", """FROM scratch
COPY --exclude=*.txt hom* /mydir/
COPY --exclude=*.txt --exclude=*.md hom* /two/
COPY --exclude=*/*.png --exclude=*/*.jpeg dirs /1/
ADD --exclude=*.mp3 dirs/dir3/ /3/
COPY --exclude=* dirs/dir* /6/
""", {"home.txt": "t", "home.md": "m", "homer.py": "p", "dirs/dir1/f.png": "1",
      "dirs/dir1/f.txt": "2", "dirs/dir2/f.jpeg": "3", "dirs/dir3/f.mp3": "4", "dirs/dir3/f.mpeg": "5"})
    mb.build(ctx, "-t", "exclude:1")
    root = umoci_unpack(mb, "exclude:1", tmp_path)
    assert files(root / "mydir") == {"home.md", "homer.py"}
    assert files(root / "two") == {"homer.py"}
    # BuildKit's testExcludedFilesOnCopy: patterns match below each copied dir
    assert files(root / "1") == {"dir1/f.txt", "dir3/f.mp3", "dir3/f.mpeg"}
    assert files(root / "3") == {"f.mpeg"}
    assert files(root / "6") == set() and (root / "6").is_dir()


def test_symbolic_chmod_and_the_dirs_a_copy_creates(mb: Minibuild, tmp_path):
    # The reference's --chmod examples (+x, u=rwX,go=rX, g=u); BuildKit's testCopyChmod for the
    # parents: `COPY --chmod=777 foo /parent/foo` makes /parent 0777; symbolic modes leave 0755.
    ctx = write_context(tmp_path / "ctx", """FROM scratch
COPY --chmod=+x script.sh /app/
COPY --chmod=u=rwX,go=rX conf /conf/
COPY --chmod=g=u conf/a /gu
COPY --chmod=777 script.sh /parent/foo
COPY --chmod=770 script.sh /parent/sub/foo
COPY --chown=10:20 script.sh /owned/deep/
""", {"script.sh": "#!/bin/sh\n", "conf/a": "a", "conf/run": "r", "conf/sub/b": "b"})
    for rel, bits in (("script.sh", 0o644), ("conf/a", 0o640), ("conf/run", 0o700), ("conf/sub", 0o700)):
        os.chmod(ctx / rel, bits)
    mb.build(ctx, "-t", "chmod:1")
    root = umoci_unpack(mb, "chmod:1", tmp_path)
    assert mode(root / "app") == 0o755 and mode(root / "app" / "script.sh") == 0o755
    assert [mode(root / "conf" / r) for r in ("a", "run", "sub", "sub/b")] == [0o644, 0o755, 0o755, 0o644]
    assert mode(root / "gu") == 0o660
    assert mode(root / "parent") == 0o777 and mode(root / "parent" / "sub") == 0o770
    # umoci unpacks as root, so owners are those of the layer: every dir the COPY made is --chown's
    assert [(os.stat(root / r).st_uid, os.stat(root / r).st_gid)
            for r in ("owned", "owned/deep", "owned/deep/script.sh")] == [(10, 20)] * 3


def test_wildcards_symlinks_sockets_and_archives(mb: Minibuild, tmp_path):
    ctx = write_context(tmp_path / "ctx", """FROM scratch
COPY foo nomatch* /w/
COPY lin* /links/
COPY sock* /s/
ADD *.tar /dest
""", {"foo": "foo", "target.txt": "the target\n", "sockdir/keep": "k"})
    (ctx / "link.txt").symlink_to("target.txt")
    for name in ("one", "two"):
        with tarfile.open(ctx / f"{name}.tar", "w") as tf:
            info = tarfile.TarInfo(f"{name}/file")
            info.size = len(name)
            tf.addfile(info, io.BytesIO(name.encode()))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "sock.socket"))
    os.mkfifo(ctx / "sockdir" / "fifo")
    try:
        mb.build(ctx, "-t", "wild:1")
    finally:
        sock.close()
    root = umoci_unpack(mb, "wild:1", tmp_path)
    assert files(root / "w") == {"foo"}  # BuildKit's testEmptyWildcard
    assert not (root / "links" / "link.txt").is_symlink()  # a wildcard's link: its content
    assert (root / "links" / "link.txt").read_text() == "the target\n"
    assert files(root / "s") == {"keep"}  # the socket and the fifo are skipped
    assert files(root / "dest") == {"one/file", "two/file"}


def test_add_tar_link_past_the_top_at_root(mb: Minibuild, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nADD t.tar /\nRUN cat /via/inside\n")
    with tarfile.open(ctx / "t.tar", "w") as tf:
        for name, target in (("tmp/x-link", "../tmp/x"), ("via", "../../tmp")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
        info = tarfile.TarInfo("via/inside")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"in\n"))
    proc = mb.build(ctx, "-t", "atroot:1")
    assert "in" in proc.stdout + proc.stderr
    root = umoci_unpack(mb, "atroot:1", tmp_path)
    assert os.readlink(root / "tmp" / "x-link") == "../tmp/x"
    assert os.readlink(root / "via") == "../../tmp"
    assert (root / "tmp" / "inside").read_text() == "in\n"


def test_copy_from_keeps_the_stages_owners_and_link_is_accepted(mb: Minibuild, tmp_path):
    # BuildKit's testCopyChownExistingDir: files keep the stage's uid/gid; a dir the COPY
    # creates is root's; --chown gives everything the named owner.
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0 AS source
RUN mkdir -p /dir/subdir && echo f > /file && echo n > /dir/subdir/nestedfile \\
 && chown 100:200 /file && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile
FROM scratch
COPY --from=source /file /
COPY --from=source /dir /dir
COPY --link --from=source --chown=300:400 /dir /chowned
COPY --link=true --from=source /file /linked
COPY --from=source --exclude=subdir/nested* /dir /excluded
""")
    mb.build(ctx, "-t", "owners:1")
    root = umoci_unpack(mb, "owners:1", tmp_path)

    def owner(rel: str) -> tuple[int, int]:
        st = os.lstat(root / rel)
        return st.st_uid, st.st_gid

    assert owner("file") == (100, 200) and owner("linked") == (100, 200)
    assert owner("dir") == (0, 0)
    assert owner("dir/subdir") == (101, 201) and owner("dir/subdir/nestedfile") == (102, 202)
    assert {owner(r) for r in ("chowned", "chowned/subdir", "chowned/subdir/nestedfile")} == {(300, 400)}
    assert (root / "excluded" / "subdir").is_dir() and files(root / "excluded") == set()


def test_exclude_parents_and_chmod_rerun_the_step_when_changed(mb: Minibuild, tmp_path):
    files_ = {"a.txt": "a", "b.md": "b", "d/c.txt": "c"}
    variants = ["COPY --exclude=*.md . /app/", "COPY --exclude=*.txt . /app/",
                "COPY --parents d/c.txt /app/", "COPY --chmod=u+x . /app/", "COPY --chmod=g+x . /app/"]
    for i, line in enumerate(variants):
        ctx = write_context(tmp_path / f"ctx{i}", f"FROM scratch\n{line}\n", files_)
        proc = mb.build(ctx, "-t", f"key:{i}")
        assert "CACHED" not in proc.stderr, line
        again = mb.build(ctx, "-t", f"key:{i}")
        assert "CACHED" in again.stderr, line
    # an excluded file's change still re-runs the step (the key covers what the sources name)
    (tmp_path / "ctx0" / "b.md").write_text("changed")
    assert "CACHED" not in mb.build(tmp_path / "ctx0", "-t", "key:0").stderr


@pytest.mark.parametrize("line", ["COPY --parents out/secr* out/su* /d/",
                                  "COPY --exclude=*.txt --parents out/* /d/",
                                  "COPY --parents out/./sec* /d/"])
def test_parents_wildcard_below_a_link_out_of_the_context_is_refused(mb: Minibuild, tmp_path, line):
    """Attack from the adversarial review: the literal part of a --parents wildcard (`out`) was
    walked with the link followed, so a context could list and hash host files as root."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    (host / "secret.txt").write_text("HOSTSECRET\n")
    ctx = write_context(tmp_path / "ctx", f"FROM scratch\n{line}\n")
    (ctx / "out").symlink_to(host)
    out = mb.build(ctx, check=False)
    assert out.returncode == 1, out.stderr
    assert "outside the build context" in out.stderr and "internal error" not in out.stderr
