"""10,000-deep trees (past PATH_MAX and Python's recursion limit) through the walks that copy:
`cp` into and out of a container, COPY from the context, a squash build, fsck and prune on
such an image, and diff of a container whose image holds one (issue 13, finding 7)."""

from __future__ import annotations

import pytest

from tests.conftest import write_context
from tests.deeptree import DEEP, chain_depth, deep_teardown, fast_tmp, make_deep  # noqa: F401 - fixtures
from tests.integration.test_containers import cmb, ps  # noqa: F401 - cmb is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deep_teardown")]

# every `cd -P` of the loop costs a lookup in the container; 10,000 of them take a few seconds
READ_BOTTOM = f"cd {{}} && i=0; while [ $i -lt {DEEP} ]; do cd -P d || exit 3; i=$((i+1)); done; cat bottom"


def test_cp_a_10000_deep_dir_into_and_out_of_a_container(cmb, fast_tmp):  # noqa: F811
    make_deep(fast_tmp / "in", bottom=b"host")
    cmb.run("run", "--name", "box", "base:1.0", "true")
    cmb.run("cp", str(fast_tmp / "in"), "box:/deep")
    cmb.run("cp", "box:/deep", str(fast_tmp / "out"))
    assert chain_depth(fast_tmp / "out") == (DEEP, b"host")
    cmb.run("rm", "box")


def test_copy_of_a_10000_deep_context_dir_and_a_squash_build(cmb, tmp_path, fast_tmp):  # noqa: F811
    context = write_context(fast_tmp / "ctx", "FROM base:1.0\nCOPY deep /deep\nRUN echo step > /step\n")
    make_deep(context / "deep", bottom=b"ctx")
    cmb.build(context, "-t", "deepcopy:1")
    out = cmb.run("run", "--rm", "deepcopy:1", "sh", "-c", READ_BOTTOM.format("/deep"))
    assert out.stdout == "ctx"
    cmb.build(context, "--squash", "-t", "deepsquash:1")
    out = cmb.run("run", "--rm", "deepsquash:1", "sh", "-c", READ_BOTTOM.format("/deep"))
    assert out.stdout == "ctx"
    cmb.run("fsck", "--deep")
    cmb.run("rmi", "deepcopy:1", "deepsquash:1")
    cmb.run("prune", "--cache")
    cmb.run("fsck")


def test_diff_of_a_container_on_a_10000_deep_image(cmb, fast_tmp):  # noqa: F811
    context = write_context(fast_tmp / "ctx", "FROM base:1.0\nCOPY deep /deep\n")
    make_deep(context / "deep", bottom=b"ctx")
    cmb.build(context, "-t", "deepimg:1")
    cmb.run("run", "-d", "--name", "dc", "deepimg:1", "sleep", "600")
    cmb.run("exec", "dc", "sh", "-c", READ_BOTTOM.format("/deep").replace("cat bottom", "echo new > bottom2"))
    diff = cmb.run("diff", "dc").stdout.splitlines()
    bottom = "/deep/" + "/".join(["d"] * DEEP)
    assert f"A {bottom}/bottom2" in diff and f"C {bottom}" in diff
    cmb.run("commit", "dc", "deepimg:2")
    cmb.run("rm", "-f", "dc")
    out = cmb.run("run", "--rm", "deepimg:2", "sh", "-c", READ_BOTTOM.format("/deep").replace("bottom", "bottom2"))
    assert out.stdout == "new\n"
