"""10,000-deep trees (past PATH_MAX and Python's recursion limit) through the walks that copy:
`cp` into and out of a container, COPY from the context, a squash build, fsck and prune on
such an image, and diff of a container whose image holds one (issue 13, finding 7)."""

from __future__ import annotations

import json
import tarfile

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


def layer_members(archive) -> dict[str, tarfile.TarInfo | bytes]:
    """The members of the one layer of a saved (OCI) single-layer image: name -> TarInfo, or the
    bytes for a file named `bottom`."""
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))
        blob = lambda d: outer.extractfile("blobs/sha256/" + d.removeprefix("sha256:"))  # noqa: E731
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        [layer] = manifest["layers"]
        found: dict[str, tarfile.TarInfo | bytes] = {}
        with tarfile.open(fileobj=blob(layer["digest"]), mode="r|*") as tf:
            for member in tf:
                bottom = member.name.endswith("/bottom")
                found[member.name.rstrip("/")] = tf.extractfile(member).read() if bottom else member
        return found


def test_copy_of_a_10000_deep_context_dir(cmb, fast_tmp):  # noqa: F811
    """COPY of a context dir far past PATH_MAX: hashed and copied through fds (fs/longpath.py),
    every level in the layer; a rebuild after a change copies it again (reuse is not tried)."""
    ctx = write_context(fast_tmp / "ctx", "FROM scratch\nCOPY . /\n")
    make_deep(ctx / "tree", bottom=b"deep")
    cmb.build(ctx, "-t", "deepcopy:1")
    cmb.run("save", "-o", str(fast_tmp / "one.tar"), "deepcopy:1")
    members = layer_members(fast_tmp / "one.tar")
    assert members["tree/" + "d/" * DEEP + "bottom"] == b"deep"
    assert len([m for m in members if m.startswith("tree")]) == DEEP + 2
    (ctx / "more").write_text("more\n")
    cmb.build(ctx, "-t", "deepcopy:2")
    cmb.run("save", "-o", str(fast_tmp / "two.tar"), "deepcopy:2")
    members = layer_members(fast_tmp / "two.tar")
    assert members["tree/" + "d/" * DEEP + "bottom"] == b"deep" and "more" in members
    cmb.run("rmi", "deepcopy:1", "deepcopy:2")
    cmb.run("prune", "--cache")
    cmb.run("fsck")
