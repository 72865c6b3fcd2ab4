"""10,000-deep trees (past PATH_MAX and Python's recursion limit) through the walks that copy:
`cp` into and out of a container, COPY from the context, a squash build, fsck and prune on
such an image, and diff of a container whose image holds one (issue 13, finding 7)."""

from __future__ import annotations

import pytest

from tests.conftest import write_context
from tests.deeptree import DEEP, chain_depth, deep_teardown, fast_tmp, make_deep  # noqa: F401 - fixtures
from tests.integration.test_containers import cmb, ps  # noqa: F401 - cmb is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deep_teardown")]

# a shell's `cd -P` loop down 10,000 levels of an overlay takes minutes: the trees are read
# back with `cp` (fd by fd) instead


def test_cp_a_10000_deep_dir_into_and_out_of_a_container(cmb, fast_tmp):  # noqa: F811
    make_deep(fast_tmp / "in", bottom=b"host")
    cmb.run("run", "--name", "box", "base:1.0", "true")
    cmb.run("cp", str(fast_tmp / "in"), "box:/deep")
    cmb.run("cp", "box:/deep", str(fast_tmp / "out"))
    assert chain_depth(fast_tmp / "out") == (DEEP, b"host")
    cmb.run("rm", "box")


def deep_image(cmb, fast_tmp, tag: str) -> None:  # noqa: F811
    """An image with a 10,000-deep /deep (cp into a container, then commit)."""
    make_deep(fast_tmp / "src", bottom=b"img")
    cmb.run("run", "--name", "maker", "base:1.0", "true")
    cmb.run("cp", str(fast_tmp / "src"), "maker:/deep")
    cmb.run("commit", "maker", tag)
    cmb.run("rm", "maker")


def test_diff_and_commit_of_a_container_on_a_10000_deep_image(cmb, fast_tmp):  # noqa: F811
    deep_image(cmb, fast_tmp, "deepimg:1")
    bottom = "/deep/" + "/".join(["d"] * DEEP)  # cp walks a container path name by name
    (fast_tmp / "new").write_text("new\n")
    cmb.run("run", "-d", "--name", "dc", "deepimg:1", "sleep", "600")
    cmb.run("cp", str(fast_tmp / "new"), f"dc:{bottom}/bottom2")
    diff = cmb.run("diff", "dc").stdout.splitlines()
    assert f"A {bottom}/bottom2" in diff and f"C {bottom}" in diff
    assert len(diff) == 2  # the dirs above were only copied up: unchanged, as docker says
    cmb.run("commit", "dc", "deepimg:2")
    cmb.run("rm", "-f", "dc")
    cmb.run("run", "--name", "check", "deepimg:2", "true")
    cmb.run("cp", f"check:{bottom}/bottom2", str(fast_tmp / "got"))
    assert (fast_tmp / "got").read_text() == "new\n"
    cmb.run("cp", "check:/deep", str(fast_tmp / "out"))
    assert chain_depth(fast_tmp / "out") == (DEEP, b"img")
    cmb.run("rm", "check")
    cmb.run("fsck", "--deep")
    cmb.run("rmi", "deepimg:2", "deepimg:1")
    cmb.run("prune", "--cache")
    cmb.run("fsck")


def test_copy_of_a_context_dir_past_path_max_is_one_error_line(cmb, fast_tmp):  # noqa: F811
    """The copier still works by path: a context dir deeper than PATH_MAX cannot be COPYed yet,
    and says so at the COPY in one line (it was an internal error, exit 70)."""
    ctx = write_context(fast_tmp / "ctx", "FROM scratch\nCOPY . /\n")
    make_deep(ctx / "tree", depth=2_500)  # 5,000 bytes of path
    out = cmb.build(ctx, "-t", "deepcopy:1", check=False)
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Buildfile:2:1: COPY failed" in errors[0] and "PATH_MAX" in errors[0]
    assert "internal error" not in out.stderr
