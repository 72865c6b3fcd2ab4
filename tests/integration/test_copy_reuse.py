"""A rebuilt COPY reuses, by hard link, the unchanged files of the layer it made last time.

Whatever changed in the context, the layer must be exactly the one a fresh copy gives (same
DiffID as a --no-cache build in another store), and the earlier layer must never change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context

pytestmark = pytest.mark.integration

EPOCH = "1300000000"  # after the context's mtimes (kept as they are), before "now" (clamped)
BUILDFILE = "FROM base:1.0\nCOPY {flags}src/ /app/\nRUN cat /app/d0/f01.txt > /copied\n"


def make_context(path: Path, flags: str = "") -> Path:
    """src/d0..d3/f00..f24 with distinct bytes, one executable, old distinct mtimes."""
    files = {f"src/d{i}/f{j:02d}.txt": f"file {i}/{j}\n" * (j + 1) for i in range(4) for j in range(25)}
    ctx = write_context(path, BUILDFILE.format(flags=flags), files)
    os.chmod(ctx / "src/d1/f03.txt", 0o755)
    for n, p in enumerate(sorted((ctx / "src").rglob("*"), reverse=True)):
        os.utime(p, ns=(1_200_000_000_000_000_000 + n * 1_001, 1_200_000_000_000_000_000 + n * 1_001))
    os.utime(ctx / "src", ns=(1_199_000_000_000_000_000,) * 2)
    return ctx


def build(mb: Minibuild, ctx: Path, tag: str, *args: str) -> str:
    return mb.build(ctx, "--source-date-epoch", EPOCH, "-t", tag, *args).stderr


def diff_ids(mb: Minibuild, ref: str) -> list[str]:
    return json.loads(mb.run("inspect", ref).stdout)[0]["RootFS"]["Layers"]


def layer_dir(mb: Minibuild, diff_id: str) -> Path:
    return next(p for p in (mb.root / "layers").iterdir() if diff_id.split(":")[1].startswith(p.name))


def reused(output: str) -> int:
    """Files reused by all COPY steps of a build, from the progress notes."""
    return sum(int(n) for n in re.findall(r"(\d+) files reused", output))


def fresh(base_store: Path, tmp_path: Path, ctx: Path, *args: str) -> list[str]:
    """The DiffIDs of a --no-cache build of ctx in a store of its own."""
    root = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}"
    subprocess.run(["cp", "-a", str(base_store), str(root)], check=True)
    other = Minibuild(root)
    build(other, ctx, "fresh:1", "--no-cache", *args)
    return diff_ids(other, "fresh:1")


def tree(path: Path) -> dict[str, tuple]:
    """Everything a layer keeps of a dir's entries but for dir mtimes ("now" in a fresh copy)."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        kind = "d" if p.is_dir() and not p.is_symlink() else "l" if p.is_symlink() else "f"
        data = os.readlink(p) if kind == "l" else p.read_bytes() if kind == "f" else None
        out[str(p.relative_to(path))] = (kind, st.st_mode, st.st_uid, st.st_gid, data,
                                         None if kind == "d" else st.st_mtime_ns)
    return out


def edit(ctx: Path, back: bool = False) -> None:
    """New bytes in one file, same size and mtime (back=True restores the bytes)."""
    p = ctx / "src/d2/f07.txt"
    st = p.stat()
    p.write_bytes(p.read_bytes().replace(*((b"FILE", b"file") if back else (b"file", b"FILE"))))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def remove(ctx: Path) -> None:
    (ctx / "src/d2/f07.txt").unlink()


def rename(ctx: Path) -> None:
    (ctx / "src/d2/f07.txt").rename(ctx / "src/d3/moved.txt")


def chmod(ctx: Path) -> None:
    os.chmod(ctx / "src/d2/f07.txt", 0o600)


def to_dir(ctx: Path) -> None:
    (ctx / "src/d2/f07.txt").unlink()
    (ctx / "src/d2/f07.txt").mkdir()
    (ctx / "src/d2/f07.txt/inner.txt").write_text("now a dir\n")


def to_symlink(ctx: Path) -> None:
    (ctx / "src/d2/f07.txt").unlink()
    os.symlink("f08.txt", ctx / "src/d2/f07.txt")


def dir_removed(ctx: Path) -> None:
    shutil.rmtree(ctx / "src/d3")


def added(ctx: Path) -> None:
    (ctx / "src/d4").mkdir()
    (ctx / "src/d4/new.txt").write_text("new\n")


@pytest.mark.parametrize("change", [edit, remove, rename, chmod, to_dir, to_symlink, dir_removed, added])
def test_a_rebuild_reuses_unchanged_files_and_gives_the_fresh_layer(mb, base_store, tmp_path, change):
    ctx = make_context(tmp_path / "ctx")
    build(mb, ctx, "app:1")
    change(ctx)
    out = build(mb, ctx, "app:2")
    assert reused(out) >= 70, out
    ids = diff_ids(mb, "app:2")
    assert ids == fresh(base_store, tmp_path, ctx)
    old, new = layer_dir(mb, diff_ids(mb, "app:1")[-2]), layer_dir(mb, ids[-2])
    assert (new / "app/d0/f00.txt").samefile(old / "app/d0/f00.txt")


@pytest.mark.parametrize("flags", ["--chown=1:2 ", "--chown=daemon ", "--chmod=0640 ", "--chown=nobody:daemon --chmod=0600 "])
def test_chown_and_chmod_copies_reuse_and_match_a_fresh_copy(mb, base_store, tmp_path, flags):
    ctx = make_context(tmp_path / "ctx", flags)
    build(mb, ctx, "app:1")
    edit(ctx)
    out = build(mb, ctx, "app:2")
    assert reused(out) == 99, out
    assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)


def test_new_flags_give_the_fresh_layer(mb, base_store, tmp_path):
    ctx = make_context(tmp_path / "ctx")
    build(mb, ctx, "app:1")
    for n, flags in enumerate(("--chown=1:1 ", "--chmod=0700 ", "")):
        (ctx / "Buildfile").write_text(BUILDFILE.format(flags=flags))
        (ctx / "src/d2/f07.txt").write_text(f"version {n}\n")
        out = build(mb, ctx, "app:2")
        assert reused(out) == (99 if flags == "" else 0)  # a new shape has nothing to reuse from
        assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)


def test_reuse_matches_a_fresh_copy_file_by_file(mb, base_store, tmp_path):
    """Mtimes to the nanosecond, modes, owners and dirs, not only what the clamped tar shows."""
    ctx = make_context(tmp_path / "ctx")
    build(mb, ctx, "app:1")
    rename(ctx)
    build(mb, ctx, "app:2")
    root = tmp_path / "other"
    subprocess.run(["cp", "-a", str(base_store), str(root)], check=True)
    other = Minibuild(root)
    build(other, ctx, "app:2", "--no-cache")
    ours, theirs = layer_dir(mb, diff_ids(mb, "app:2")[-2]), layer_dir(other, diff_ids(other, "app:2")[-2])
    assert tree(ours) == tree(theirs)


def test_the_earlier_layer_never_changes(mb, tmp_path):
    ctx = make_context(tmp_path / "ctx")
    (ctx / "Buildfile").write_text("FROM base:1.0\nCOPY src/ /app/\nRUN echo run >> /app/d0/f01.txt\n")
    build(mb, ctx, "app:1")
    old = layer_dir(mb, diff_ids(mb, "app:1")[-2])
    edit(ctx)
    out = build(mb, ctx, "app:2")  # reuses f01.txt, then the RUN appends to it through overlay
    assert reused(out) == 99
    new = layer_dir(mb, diff_ids(mb, "app:2")[-2])
    assert (new / "app/d0/f01.txt").samefile(old / "app/d0/f01.txt")
    original = (ctx / "src/d0/f01.txt").read_bytes()
    assert (old / "app/d0/f01.txt").read_bytes() == original
    before = {p: (p.read_bytes(), p.stat().st_ctime_ns, p.stat().st_mtime_ns) for p in old.rglob("*.txt")}
    (ctx / "Buildfile").write_text("FROM base:1.0\nCOPY src/ /app/\nRUN echo again >> /app/d0/f01.txt\n")
    build(mb, ctx, "app:3")  # the COPY is cached; the RUN writes to a reused file once more
    assert {p: (p.read_bytes(), p.stat().st_ctime_ns, p.stat().st_mtime_ns) for p in old.rglob("*.txt")} == before
    for ref, tail in (("app:1", "run\n"), ("app:2", "run\n"), ("app:3", "again\n")):
        out = mb.run("run", "--rm", ref, "cat", "/app/d0/f01.txt").stdout
        assert out == original.decode() + tail
    assert mb.run("fsck").returncode == 0


def test_removing_the_earlier_image_keeps_the_new_one(mb, tmp_path):
    ctx = make_context(tmp_path / "ctx")
    build(mb, ctx, "app:1")
    edit(ctx)
    assert reused(build(mb, ctx, "app:2")) == 99
    diff_ids_1 = diff_ids(mb, "app:1")
    old = layer_dir(mb, diff_ids_1[-2])
    mb.run("rmi", "app:1")
    mb.run("prune", "--cache")
    assert not old.exists()
    new = layer_dir(mb, diff_ids(mb, "app:2")[-2])
    assert (new / "app/d0/f00.txt").read_bytes() == (ctx / "src/d0/f00.txt").read_bytes()
    assert mb.run("run", "--rm", "app:2", "cat", "/app/d1/f03.txt").stdout == (ctx / "src/d1/f03.txt").read_text()
    assert mb.run("fsck").returncode == 0
    # Back to the first content: prune --cache dropped the reuse hints with the cache entries,
    # so the COPY copies everything again, and gives the first layer again.
    edit(ctx, back=True)
    assert reused(build(mb, ctx, "app:3")) == 0
    assert diff_ids(mb, "app:3")[-2] == diff_ids_1[-2]
    assert mb.run("fsck").returncode == 0


def test_add_and_copy_from_never_reuse(mb, base_store, tmp_path):
    ctx = make_context(tmp_path / "ctx")
    (ctx / "Buildfile").write_text("FROM base:1.0 AS one\nADD src/ /app/\n"
                                   "FROM base:1.0\nCOPY --from=one /app/ /app/\n")
    build(mb, ctx, "app:1")
    edit(ctx)
    out = build(mb, ctx, "app:2")
    assert reused(out) == 0 and "CACHED" not in out
    assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)


def test_copy_into_dirs_the_image_has(mb, base_store, tmp_path):
    """Dest dirs that exist below (copied up, not made) and files that replace image files."""
    ctx = make_context(tmp_path / "ctx")
    write_context(ctx, "FROM base:1.0\nCOPY src/ /\n",
                  {"src/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "src/bin/tool": "#!/bin/sh\n",
                   "src/etc/app/conf": "x=1\n"})
    build(mb, ctx, "app:1")
    edit(ctx)
    out = build(mb, ctx, "app:2")
    assert reused(out) == 102, out
    assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)
    assert mb.run("run", "--rm", "app:2", "cat", "/etc/passwd").stdout == "root:x:0:0:root:/root:/bin/sh\n"


@pytest.mark.parametrize("sources", ["src/d0/ src/d1/f03.txt", "src/d*/f0*.txt src/d2/"])
def test_several_sources_one_of_them_overwriting_another(mb, base_store, tmp_path, sources):
    ctx = make_context(tmp_path / "ctx")
    (ctx / "Buildfile").write_text(f"FROM base:1.0\nCOPY {sources} /app/\n")
    build(mb, ctx, "app:1")
    (ctx / "src/d0/f05.txt").write_text("changed\n")
    out = build(mb, ctx, "app:2")
    assert reused(out) > 0, out
    assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)
    if sources.startswith("src/d0/"):  # the later source wins, as in a fresh copy
        assert mb.run("run", "--rm", "app:2", "cat", "/app/f03.txt").stdout == \
            (ctx / "src/d1/f03.txt").read_text()


def test_chown_names_resolve_from_the_image_not_from_a_reused_passwd(mb, base_store, tmp_path):
    """The copy brings its own /etc/passwd without `daemon`: names still come from the image."""
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY --chown=daemon:daemon r/ /\n", {
        "r/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "r/etc/group": "root:x:0:\n",
        "r/app/a": "a\n", "r/app/b": "b\n"})
    build(mb, ctx, "app:1")
    (ctx / "r/app/b").write_text("changed\n")
    out = build(mb, ctx, "app:2")
    assert reused(out) == 1, out  # app/a; the account files are copied again
    assert diff_ids(mb, "app:2") == fresh(base_store, tmp_path, ctx)
