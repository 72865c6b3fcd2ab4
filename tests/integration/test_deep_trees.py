"""A 10,000-deep directory (past PATH_MAX and Python's recursion limit) from a RUN step and from a
container goes through build, history, diff, commit, save/load, fsck --deep, prune and rmi, and
the store stays usable (issue 13, finding 7: a 1,500-deep dir used to brick it)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import write_context
from tests.deeptree import deep_teardown  # noqa: F401 - a fixture
from tests.integration.test_containers import cmb, ps  # noqa: F401 - cmb is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deep_teardown")]

# 10,000 levels made by a RUN took over 300 s on a loaded 2-core machine (each mkdir/cd in the
# overlay costs more the deeper it is); 3,000 is past PATH_MAX (2,048 levels of "d/") and twice
# the depth that bricked the store. The unit tests walk 10,000 levels on plain dirs.
DEEP = int(os.environ.get("MINIBUILD_TEST_DEEP", "3000"))
# `cd -P`: a logical `cd` builds the whole path string and stops at PATH_MAX (2,047 levels here)
MAKE_DEEP = (f'i=0; while [ $i -lt {DEEP} ]; do mkdir d && cd -P d || exit 3; i=$((i+1)); done; '
             'echo deep > bottom')
BOTTOM = "/".join(["d"] * DEEP) + "/bottom"


def store_usable(mb) -> None:
    """`images` and `fsck` exit 0, and no session scratch is left in ROOT/run."""
    mb.run("images")
    mb.run("fsck")
    run_dir = mb.root / "run"
    assert not run_dir.exists() or os.listdir(run_dir) == []


def test_a_10000_deep_tree_goes_through_every_command(cmb, tmp_path):
    context = write_context(tmp_path / "ctx", f"FROM base:1.0\nRUN mkdir -p /deep && cd /deep && {MAKE_DEEP}\n")
    cmb.build(context, "-t", "deep:1")
    history = json.loads(cmb.run("history", "--format", "json", "deep:1").stdout)
    assert any("mkdir d" in h["created_by"] for h in history)
    store_usable(cmb)

    cmb.run("run", "-d", "--name", "dc", "base:1.0", "sleep", "600")
    cmb.run("exec", "dc", "sh", "-c", f"mkdir -p /deep && cd /deep && {MAKE_DEEP}")
    diff = cmb.run("diff", "dc").stdout.splitlines()
    assert len(diff) >= DEEP + 2, (len(diff), diff[-1][-60:])
    assert f"A /deep/{BOTTOM}" in diff
    cmb.run("commit", "dc", "deepc:1")
    cmb.run("rm", "-f", "dc")

    archive = tmp_path / "deep.tar"
    cmb.run("save", "-o", str(archive), "deepc:1")
    cmb.run("rmi", "deepc:1")
    cmb.run("prune")
    cmb.run("load", "-i", str(archive))  # the layer is gone from the store: unpacked again
    out = cmb.run("run", "--rm", "deepc:1", "sh", "-c",
                  f"cd /deep && i=0; while [ $i -lt {DEEP} ]; do cd -P d; i=$((i+1)); done; cat bottom")
    assert out.stdout.strip() == "deep"
    cmb.run("fsck", "--deep")
    cmb.run("rmi", "deep:1", "deepc:1")
    cmb.run("prune", "--cache")
    store_usable(cmb)
    assert "deep" not in cmb.run("images").stdout
