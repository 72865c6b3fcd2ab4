"""Store paths: every path under the root named once; the default root; a light import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibuild.store.paths import StorePaths, default_root

REPO = Path(__file__).resolve().parents[3]


def test_the_layout_under_the_root():
    p = StorePaths.at("/s")
    found = {name: str(getattr(p, name)) for name in (
        "oci", "oci_layout", "index", "blobs", "layers", "meta", "run", "locks", "gc_lock",
        "index_lock", "cache", "step_cache", "copy_hints", "stat_cache", "parse_cache", "memo",
        "cache_mounts", "containers", "volumes")}
    assert found == {
        "oci": "/s/oci", "oci_layout": "/s/oci/oci-layout", "index": "/s/oci/index.json",
        "blobs": "/s/oci/blobs/sha256", "layers": "/s/layers", "meta": "/s/meta", "run": "/s/run",
        "locks": "/s/locks", "gc_lock": "/s/locks/gc", "index_lock": "/s/locks/index",
        "cache": "/s/cache", "step_cache": "/s/cache/steps", "copy_hints": "/s/cache/copies",
        "stat_cache": "/s/cache/stat", "parse_cache": "/s/cache/parse", "memo": "/s/cache/memo",
        "cache_mounts": "/s/cache/mounts", "containers": "/s/containers", "volumes": "/s/volumes"}


def test_paths_are_a_frozen_value():
    p = StorePaths.at("/s")
    assert p == StorePaths(Path("/s")) and p.root == Path("/s")
    with pytest.raises(AttributeError):
        p.root = Path("/t")  # type: ignore[misc]


def test_every_users_path_comes_from_store_paths(tmp_path):
    from minibuild.build import cachemounts, memo, parsecache
    from minibuild.containers.records import Containers
    from minibuild.containers.volumes import Volumes

    p = StorePaths.at(tmp_path)
    assert memo.memo_dir(tmp_path) == p.memo
    assert parsecache.cache_dir(tmp_path) == p.parse_cache
    assert cachemounts.cache_mount_dir(tmp_path) == p.cache_mounts
    assert Containers(tmp_path).dir == p.containers and Volumes(tmp_path).dir == p.volumes


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIBUILD_ROOT", str(tmp_path / "mine"))
    assert default_root() == tmp_path / "mine"
    monkeypatch.delenv("MINIBUILD_ROOT")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_root() == Path("/var/lib/minibuild")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == tmp_path / ".local/share/minibuild"


def test_importing_store_paths_loads_only_the_standard_library():
    code = ("import sys; before = set(sys.modules)\n"
            "import minibuild.store.paths\n"
            "print(sorted(m for m in set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert [m for m in loaded if m.startswith("minibuild")] == \
        ["minibuild", "minibuild.store", "minibuild.store.paths"]
    assert "dataclasses" not in loaded  # 5 ms of every start-up (the build memo reads these paths)
