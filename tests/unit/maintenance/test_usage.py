"""df figures: shared bytes counted once, reclaimable, and `tree_bytes` against coreutils `du -sb`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from minibuild.fs import dirstack

from minibuild.maintenance.treesize import tree_bytes
from minibuild.maintenance.usage import ContainerFigures, Inventory, account

BASE = frozenset({"blob:m1", "blob:c1", "blob:l1", "dir:l1"})
APP = frozenset({"blob:m2", "blob:c2", "blob:l1", "dir:l1", "blob:l2", "dir:l2"})
SIZES = {"blob:m1": 10, "blob:c1": 20, "blob:l1": 1000, "dir:l1": 3000, "blob:m2": 11,
         "blob:c2": 21, "blob:l2": 100, "dir:l2": 300, "blob:orphan": 7, "dir:l3": 50}
LAYERS = {"sha256:l1": frozenset({"blob:l1", "dir:l1"}), "sha256:l2": frozenset({"blob:l2", "dir:l2"}),
          "sha256:l3": frozenset({"dir:l3"}), "blob:orphan": frozenset({"blob:orphan"})}


def inventory(containers=(), cache=None) -> Inventory:
    return Inventory(SIZES, {"m1": BASE, "m2": APP}, {"m1": ("base:1.0",), "m2": ("app:1.0",)},
                     LAYERS, cache if cache is not None else {}, list(containers))


def container(i: int, manifest: str = "m1", running: bool = True) -> ContainerFigures:
    return ContainerFigures(f"id{i}", f"c{i}", "base:1.0", manifest, 100, running)


def row(usage, kind):
    return next(r for r in usage.rows if r.kind == kind)


def test_images_share_the_base_layer_once():
    images = row(account(inventory()), "Images")
    assert images.total == 2
    assert images.size == sum(SIZES[i] for i in BASE | APP)
    assert images.shared == 4000  # l1's blob and dir, used by both
    assert images.unique == images.size - 4000
    assert images.reclaimable == images.size  # no container uses either


def test_twenty_containers_count_the_image_once():
    alone = account(inventory())
    busy = account(inventory([container(i) for i in range(20)]))
    assert row(busy, "Images").size == row(alone, "Images").size
    assert row(busy, "Layers").size == row(alone, "Layers").size
    assert row(busy, "Containers").size == 20 * 100
    assert row(busy, "Containers").active == 20
    assert row(busy, "Images").active == 1
    # base is in use: only app's own items are reclaimable
    assert row(busy, "Images").reclaimable == sum(SIZES[i] for i in APP - BASE)
    assert busy.total == alone.total + 2000


def test_stopped_containers_are_reclaimable():
    usage = account(inventory([container(1, running=False), container(2)]))
    assert row(usage, "Containers").reclaimable == 100


def test_layers_unreferenced_ones_are_reclaimable():
    layers = row(account(inventory()), "Layers")
    assert layers.total == 4
    assert layers.size == sum(SIZES[i] for i in ("blob:l1", "dir:l1", "blob:l2", "dir:l2",
                                                  "dir:l3", "blob:orphan"))
    assert layers.shared == 4000
    assert layers.reclaimable == 57  # dir:l3 and the orphan blob


def test_cache_only_layers_are_the_cache_s_reclaimable_bytes():
    usage = account(inventory(cache={"k1": frozenset({"dir:l3"}), "k2": LAYERS["sha256:l1"]}))
    cache = row(usage, "Build Cache")
    assert (cache.total, cache.active, cache.size) == (2, 1, 4050)
    assert (cache.shared, cache.reclaimable) == (4000, 50)
    assert row(usage, "Layers").reclaimable == 7  # l3 is kept by the cache now


@pytest.mark.skipif(shutil.which("du") is None, reason="needs coreutils du")
def test_tree_bytes_matches_du(tmp_path):
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"x" * 12345)
    os.link(root / "a" / "f", root / "a" / "b" / "hard")
    (root / "a" / "link").symlink_to("f")
    (root / "empty").write_bytes(b"")
    du = int(subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True,
                            check=True).stdout.split()[0])
    assert tree_bytes(root) == du
    assert tree_bytes(root / "a" / "f") == 12345
    assert tree_bytes(tmp_path / "missing") == 0


def test_tree_bytes_skips_what_vanishes_while_it_walks(tmp_path, monkeypatch):
    """A running container deletes files in its volume while df walks it: no crash."""
    (tmp_path / "gone" / "deep").mkdir(parents=True)
    (tmp_path / "gone" / "f").write_text("x" * 10)
    (tmp_path / "lost").write_text("z" * 5)
    (tmp_path / "kept").write_text("y" * 7)
    real_names = dirstack.Walk._names
    calls = []

    def names_then_delete(fd):  # the root as listed, then the tree changes before it is read
        listed = real_names(fd)
        if not calls:
            calls.append(fd)
            shutil.rmtree(tmp_path / "gone")
            (tmp_path / "lost").unlink()
        return listed

    monkeypatch.setattr(dirstack.Walk, "_names", staticmethod(names_then_delete))
    assert tree_bytes(tmp_path) == os.lstat(tmp_path).st_size + 7
