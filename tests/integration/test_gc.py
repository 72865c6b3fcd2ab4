"""rmi, prune and df on real stores: what containers, tags and the cache keep; figures vs `du`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from minibuild.store.layout import Store
from tests.conftest import Minibuild, write_context
from tests.integration.test_containers import cmb, ps  # noqa: F401 - the fixture, reused

pytestmark = pytest.mark.integration


def blobs(mb: Minibuild) -> set[str]:
    return {p.name for p in (mb.root / "oci" / "blobs" / "sha256").iterdir()}


def layer_dirs(mb: Minibuild) -> set[str]:
    return {p.name for p in (mb.root / "layers").iterdir()}


def df(mb: Minibuild) -> dict:
    return json.loads(mb.run("df", "--format", "json").stdout)


def row(figures: dict, kind: str) -> dict:
    return next(r for r in figures["rows"] if r["kind"] == kind)


def du_total(*paths: Path) -> int:
    """coreutils `du -sbc` over these paths (hard links counted once)."""
    if not paths:
        return 0
    out = subprocess.run(["du", "-sbc", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def build_app(mb: Minibuild, tmp_path: Path, tag: str, payload: str) -> None:
    ctx = write_context(tmp_path / f"ctx-{tag}", f"FROM base:1.0\nRUN echo {payload} > /payload\n")
    mb.build(ctx, "-t", tag)


def valid(mb: Minibuild, ref: str, tmp_path: Path) -> None:
    """A third party unpacks the image: every blob it needs is there and hashes right."""
    from tests.integration.test_build import umoci_unpack

    assert (umoci_unpack(mb, ref, tmp_path) / "bin" / "busybox").is_file()


def test_rmi_refuses_while_a_container_uses_the_image(cmb, tmp_path):
    build_app(cmb, tmp_path, "app:1", "one")
    cmb.run("run", "--name", "user", "app:1", "true")
    out = cmb.run("rmi", "app:1", check=False)
    assert out.returncode == 1 and "container" in out.stderr and "Traceback" not in out.stderr
    cmb.run("rmi", "-f", "app:1")
    assert "app:1" not in cmb.run("images").stdout
    cmb.run("prune")
    # the container still starts: its (now untagged) image's layers were kept
    cmb.run("start", "user")
    cmb.run("rm", "-f", "user")


def test_prune_removes_what_only_a_removed_container_needed(cmb, tmp_path):
    build_app(cmb, tmp_path, "app:1", "one")
    before_blobs, before_dirs = blobs(cmb), layer_dirs(cmb)
    cmb.run("run", "--name", "user", "app:1", "true")
    cmb.run("rmi", "-f", "app:1")
    cmb.run("prune")
    assert blobs(cmb) == before_blobs and layer_dirs(cmb) == before_dirs  # container + cache keep
    cmb.run("rm", "user")
    cmb.run("prune")
    # the cache still keeps the RUN layer; the manifest and config go
    assert layer_dirs(cmb) == before_dirs and len(blobs(cmb)) == len(before_blobs) - 2
    out = cmb.run("prune", "--cache").stdout
    assert "cache entries" in out
    assert len(layer_dirs(cmb)) == len(before_dirs) - 1
    valid(cmb, "base:1.0", tmp_path)
    assert cmb.run("run", "--rm", "base:1.0", "echo", "ok").stdout == "ok\n"


def test_rmi_deletes_an_unused_image_but_not_shared_layers(cmb, tmp_path):
    build_app(cmb, tmp_path, "app:1", "one")
    build_app(cmb, tmp_path, "app:2", "two")
    cmb.run("prune", "--cache")
    dirs = layer_dirs(cmb)
    out = cmb.run("rmi", "app:1").stdout
    assert "Untagged: app:1" in out and "Deleted: sha256:" in out
    assert len(layer_dirs(cmb)) == len(dirs) - 1
    valid(cmb, "app:2", tmp_path)


def test_prune_waits_for_no_one(mb):
    with Store.open(mb.root):  # a live build or command holds the store
        out = mb.run("prune", check=False)
    assert out.returncode == 1 and "in use" in out.stderr


def test_df_matches_du_and_counts_shared_layers_once(cmb, tmp_path):
    build_app(cmb, tmp_path, "app:1", "one")
    alone = df(cmb)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: cmb.run("run", "--name", f"c{i}", "app:1", "sh", "-c",
                                        f"echo {i} > /tmp/own"), range(20)))
    busy = df(cmb)
    assert row(busy, "Containers")["total"] == 20
    assert row(busy, "Images")["size"] == row(alone, "Images")["size"]
    assert row(busy, "Layers")["size"] == row(alone, "Layers")["size"]
    assert row(busy, "Images")["active"] == 1
    store = cmb.root
    items = [*(store / "oci" / "blobs" / "sha256").iterdir(), *(store / "layers").iterdir(),
             *(p for p in (store / "containers").iterdir() if not p.name.startswith("."))]
    assert busy["total"] == du_total(*items)
    containers = [p for p in (store / "containers").iterdir() if not p.name.startswith(".")]
    assert row(busy, "Containers")["size"] == du_total(*containers)
    layers = [*(store / "layers").iterdir()]
    layer_blobs = {c["key"] for c in busy["layers"]}
    assert row(busy, "Layers")["size"] >= du_total(*layers)
    assert len(layer_blobs) == len(layers)
    text = cmb.run("df", "-v").stdout
    assert "Images space usage" in text and "app:1" in text


def test_df_counts_files_shared_by_a_copy_rebuild_once(mb, tmp_path):
    files = {f"src/f{i}.txt": f"file {i}\n" * 50 for i in range(40)}
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY src/ /src/\n", files)
    mb.build(ctx, "-t", "app:1")
    (ctx / "src" / "f0.txt").write_text("changed\n")
    mb.build(ctx, "-t", "app:2")
    layers = sorted((mb.root / "layers").iterdir())
    linked = [p for d in layers for p in d.rglob("*.txt") if p.stat().st_nlink > 1]
    assert linked, "the rebuild did not link unchanged files of the first COPY layer"
    store = mb.root
    items = [*(store / "oci" / "blobs" / "sha256").iterdir(), *layers]
    assert df(mb)["total"] == du_total(*items)
    assert list((store / "cache" / "copies").glob("*.json"))
    mb.run("prune", "--cache")
    assert not list((store / "cache" / "copies").glob("*.json"))  # reuse hints go with the cache


def test_files_shared_by_a_copy_rebuild_are_shared_in_df_and_prune_counts_what_it_frees(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY s/ /app/\n",
                        {"s/big": os.urandom(1_000_000), "s/small": "1\n"})
    mb.build(ctx, "-t", "app:1")
    (ctx / "s" / "small").write_text("2\n")
    mb.build(ctx, "-t", "app:2")
    images = {i["names"][0]: i for i in df(mb)["images"] if i["names"]}
    for name in ("app:1", "app:2"):  # unique: its own ~1 MB blob, not also the linked big file
        assert images[name]["unique"] < 1_500_000 and images[name]["shared"] >= 1_000_000, images[name]
    mb.run("rmi", "app:1")
    before = du_total(mb.root)
    (line,) = [x for x in mb.run("prune", "--cache").stdout.splitlines() if "reclaimed" in x]
    freed = before - du_total(mb.root)
    number, unit = re.fullmatch(r".*: ([\d.]+)(B|kB|MB|GB)", line).groups()
    reported = float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
    assert freed < 1_500_000  # the big file lives on in app:2's layer
    assert abs(reported - freed) < 100_000, (line, freed)


def test_prune_cache_drops_run_cache_mounts(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --mount=type=cache,target=/var/cache/app echo kept > /var/cache/app/f\n", {})
    mb.build(ctx, "-t", "app:1")
    mounts = mb.root / "cache" / "mounts"
    assert [p for p in mounts.rglob("f") if p.read_text() == "kept\n"]
    mb.run("prune")
    assert [p for p in mounts.rglob("f")], "plain prune keeps the build cache"
    mb.run("prune", "--cache")
    assert not mounts.exists() or not any(mounts.iterdir())
