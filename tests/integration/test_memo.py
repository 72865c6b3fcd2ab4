"""The build memo: an unchanged `build` answers from it, and any change of an input, of the store's
tags or of the environment runs the real build instead."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import write_context
from tests.integration.test_cache import cached_runs

pytestmark = pytest.mark.integration

BUILDFILE = """FROM base:1.0
ARG FLAVOUR=plain
WORKDIR /app
COPY src/ ./src/
RUN echo "$FLAVOUR $(cat src/a.txt)" > /app/out.txt
CMD ["cat", "/app/out.txt"]
"""


def settle() -> None:
    """Inputs written less than 100 ms before a build are too fresh to memo: wait that out."""
    time.sleep(0.25)


def stat_cache_inode(mb, context: Path) -> int:
    """A context's stat cache file is rewritten by every real build (a memo answer leaves it)."""
    name = hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:16]
    return (mb.root / "cache" / "stat" / f"{name}.json").stat().st_ino


def digest_of(mb, ref: str) -> str:
    return json.loads(mb.run("inspect", ref).stdout)[0]["Descriptor"]["digest"]


@pytest.fixture
def project(tmp_path):
    return write_context(tmp_path / "ctx", BUILDFILE, {"src/a.txt": "alpha\n", "src/b.txt": "beta\n"})


def warm(mb, project, *args: str):
    """Build, settle, build again (writes the memo); returns the second build's output."""
    mb.build(project, "-t", "app:1", *args)
    settle()
    return mb.build(project, "-t", "app:1", *args)


def test_an_unchanged_rebuild_answers_from_the_memo_with_the_same_output(mb, project):
    second = warm(mb, project)
    before = stat_cache_inode(mb, project)
    third = mb.build(project, "-t", "app:1")
    assert stat_cache_inode(mb, project) == before  # no real build ran
    assert all(cached_runs(third.stderr).values()) and len(cached_runs(third.stderr)) == 3


def test_the_replayed_output_matches_a_cached_build_line_by_line(mb, project):
    second = warm(mb, project)
    third = mb.build(project, "-t", "app:1")
    strip = lambda text: [line.split(" done in ")[0] if "done in" in line else line  # noqa: E731
                          for line in text.splitlines()]
    assert strip(third.stderr) == strip(second.stderr)
    assert [line.endswith("CACHED") for line in third.stderr.splitlines() if "done in" in line] == \
        [line.endswith("CACHED") for line in second.stderr.splitlines() if "done in" in line]


def test_same_size_same_mtime_content_change_runs_the_real_build(mb, project):
    warm(mb, project)
    old = digest_of(mb, "app:1")
    target = project / "src" / "a.txt"
    st = target.stat()
    target.write_text("ALPHA\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = mb.build(project, "-t", "app:1")
    assert not cached_runs(out.stderr)["COPY src/ ./src/"]
    assert digest_of(mb, "app:1") != old
    assert mb.run("run", "--rm", "app:1").stdout == "plain ALPHA\n"


def test_a_new_file_in_a_copied_dir_runs_the_real_build(mb, project):
    warm(mb, project)
    (project / "src" / "c.txt").write_text("gamma\n")
    out = mb.build(project, "-t", "app:1")
    assert not cached_runs(out.stderr)["COPY src/ ./src/"]
    assert "c.txt" in mb.run("run", "--rm", "app:1", "ls", "/app/src").stdout


def test_a_new_file_next_to_the_buildfile_is_a_real_but_cached_build(mb, project):
    warm(mb, project)
    old = digest_of(mb, "app:1")
    before = stat_cache_inode(mb, project)
    (project / "unrelated.txt").write_text("x\n")
    out = mb.build(project, "-t", "app:1")
    assert stat_cache_inode(mb, project) != before  # the root dir changed: the memo does not answer
    assert all(cached_runs(out.stderr).values())
    assert digest_of(mb, "app:1") == old


def test_a_retagged_base_image_is_seen(mb, project, tmp_path):
    warm(mb, project)
    old = digest_of(mb, "app:1")
    other = write_context(tmp_path / "other", "FROM base:1.0\nRUN echo other > /other.txt\n")
    mb.build(other, "-t", "base:1.0")  # base:1.0 now names another image
    out = mb.build(project, "-t", "app:1")
    assert not any(cached_runs(out.stderr).values())
    assert digest_of(mb, "app:1") != old


def test_a_removed_tag_is_written_again(mb, project):
    warm(mb, project)
    mb.run("rmi", "app:1")
    mb.build(project, "-t", "app:1")
    assert digest_of(mb, "app:1")


def test_an_environment_build_arg_is_part_of_the_key(mb, project):
    mb.run("build", "--progress", "plain", "--build-arg", "FLAVOUR", "-t", "app:1", str(project),
           env={"FLAVOUR": "salty"})
    settle()
    for _ in range(2):
        mb.run("build", "--progress", "plain", "--build-arg", "FLAVOUR", "-t", "app:1", str(project),
               env={"FLAVOUR": "salty"})
    assert mb.run("run", "--rm", "app:1").stdout == "salty alpha\n"
    mb.run("build", "--progress", "plain", "--build-arg", "FLAVOUR", "-t", "app:1", str(project),
           env={"FLAVOUR": "sweet"})
    assert mb.run("run", "--rm", "app:1").stdout == "sweet alpha\n"


def test_quiet_replay_prints_only_the_image_id(mb, project):
    warm(mb, project, "-q")
    out = mb.build(project, "-t", "app:1", "-q")
    image_id = json.loads(mb.run("inspect", "app:1").stdout)[0]["Id"]
    assert out.stdout.strip() == image_id and out.stderr == ""


def memos(mb) -> set[Path]:
    return set((mb.root / "cache" / "memo").glob("*.json"))


def test_prune_cache_drops_the_memos_and_no_cache_never_uses_one(mb, project):
    warm(mb, project)
    assert memos(mb)
    mb.run("prune", "--cache")
    assert not memos(mb)
    out = mb.build(project, "-t", "app:1", "--no-cache")
    assert not any(cached_runs(out.stderr).values())
    settle()
    mb.build(project, "-t", "app:1", "--no-cache")
    assert not memos(mb)


def test_memo_off_by_environment(mb, project):
    before = memos(mb)
    mb.run("build", "--progress", "plain", "-t", "app:1", str(project), env={"MINIBUILD_MEMO": "0"})
    settle()
    mb.run("build", "--progress", "plain", "-t", "app:1", str(project), env={"MINIBUILD_MEMO": "0"})
    assert memos(mb) == before


def test_a_missing_result_blob_runs_the_real_build(mb, project):
    warm(mb, project)
    digest = digest_of(mb, "app:1")
    blob = mb.root / "oci" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.unlink()
    mb.build(project, "-t", "app:1")
    assert Path(blob).is_file()


# -- holes a review found: each answered with a stale image before the fix ---------------------

def quiet_build(mb, context, *args: str, cwd=None) -> str:
    return mb.run("build", "-q", *args, str(context), cwd=cwd).stdout.strip()


def twice(mb, context, *args: str, cwd=None) -> str:
    """Settle, then build twice (the second writes the memo); the digest."""
    settle()
    quiet_build(mb, context, *args, cwd=cwd)
    return quiet_build(mb, context, *args, cwd=cwd)


def test_a_repointed_context_symlink_is_seen(mb, tmp_path):
    for name, text in (("r1", "one\n"), ("r2", "two\n")):
        write_context(tmp_path / name, "FROM base:1.0\nCOPY f /f\n", {"f": text})
    (tmp_path / "current").symlink_to("r1")
    first = twice(mb, "current", "-t", "app:1", cwd=tmp_path)
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to("r2")
    settle()
    assert quiet_build(mb, "current", "-t", "app:1", cwd=tmp_path) != first
    assert mb.run("run", "--rm", "app:1", "cat", "/f").stdout == "two\n"


def test_a_repointed_link_in_the_middle_of_a_source_chain_is_seen(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY a /a\n", {"c": "one\n", "d": "two\n"})
    (ctx / "sub").mkdir()
    (ctx / "sub" / "b").symlink_to("../c")
    (ctx / "a").symlink_to("sub/b")
    twice(mb, ctx, "-t", "app:1")
    (ctx / "sub" / "b").unlink()
    (ctx / "sub" / "b").symlink_to("../d")
    settle()
    quiet_build(mb, ctx, "-t", "app:1")
    assert mb.run("run", "--rm", "app:1", "cat", "/a").stdout == "two\n"


def test_a_dangling_buildfile_link_that_comes_alive_is_seen(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "unused", {})
    (ctx / "Buildfile").unlink()
    (ctx / "Dockerfile").write_text("FROM base:1.0\nENV X=dockerfile\n")
    (ctx / "Buildfile").symlink_to("../shared/Buildfile")
    twice(mb, ctx, "-t", "app:1")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "Buildfile").write_text("FROM base:1.0\nENV X=buildfile\n")
    settle()
    quiet_build(mb, ctx, "-t", "app:1")
    assert "X=buildfile" in mb.run("inspect", "app:1").stdout


def test_an_edit_behind_a_symlinked_dockerignore_is_seen(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY . /app/\n", {"keep": "x\n", "secret": "y\n"})
    (tmp_path / "ignore").write_text("Buildfile\n.dockerignore\n")
    (ctx / ".dockerignore").symlink_to("../ignore")
    twice(mb, ctx, "-t", "app:1")
    with open(tmp_path / "ignore", "a") as f:
        f.write("secret\n")
    settle()
    quiet_build(mb, ctx, "-t", "app:1")
    assert mb.run("run", "--rm", "app:1", "ls", "/app").stdout.split() == ["keep"]


def test_a_build_that_retags_its_own_base_is_never_memoized(mb, tmp_path):
    mb.run("tag", "base:1.0", "inc:1")
    ctx = write_context(tmp_path / "ctx", "FROM inc:1\nRUN echo x >> /log\n")
    settle()
    digests = [quiet_build(mb, ctx, "-t", "inc:1") for _ in range(3)]
    assert len(set(digests)) == 3
    assert mb.run("run", "--rm", "inc:1", "cat", "/log").stdout == "x\nx\nx\n"


def test_a_lost_step_cache_entry_runs_the_real_build(mb, project):
    warm(mb, project)
    for entry in (mb.root / "cache" / "steps").glob("*.json"):
        entry.unlink()
    out = mb.build(project, "-t", "app:1")
    assert not any(cached_runs(out.stderr).values())
