"""The store only its owner may enter (issue 13, finding 2): a new root is 0700, secret files
0600, and a store made before is tightened on open by one stat of its root, not a walk."""

from __future__ import annotations

import os
import stat
from dataclasses import replace

import pytest

from minibuild.containers.records import Containers
from minibuild.store import permissions
from minibuild.store.layout import Store
from minibuild.store.paths import StorePaths
from tests.unit.containers.test_records import template


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_store_root_is_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with Store.open(tmp_path / "store") as store:
            assert mode(store.root) == 0o700
    finally:
        os.umask(old)


def test_container_records_and_memos_are_written_0600(tmp_path):
    records = Containers(tmp_path)
    container = records.create(template(env=(("TOKEN", "hunter2"),)))
    config = records.path(container.id) / "config.json"
    assert mode(config) == 0o600 and "hunter2" in config.read_text()
    records.save(replace(container, state="exited"))
    assert mode(config) == 0o600


def test_an_older_store_is_tightened_on_open_once(tmp_path, monkeypatch):
    root = tmp_path / "store"
    with Store.open(root):
        pass
    paths = StorePaths.at(root)
    secrets = [paths.containers / "c1" / "config.json", paths.containers / "c1" / "log",
               paths.memo / "0123abcd"]
    for path in secrets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("TOKEN=hunter2")
        os.chmod(path, 0o644)
    os.chmod(root, 0o755)  # as minibuild left stores before
    with Store.open(root):
        assert mode(root) == 0o700
        assert [mode(p) for p in secrets] == [0o600] * 3
    chmods = []
    monkeypatch.setattr(permissions.os, "chmod", lambda *a, **k: chmods.append(a))
    with Store.open(root):
        pass
    assert chmods == []  # a tight root: nothing else is looked at


def test_a_root_that_is_not_ours_to_change_is_a_store_error(tmp_path, monkeypatch):
    from minibuild.errors import StoreError

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    monkeypatch.setattr(permissions.os, "chmod", refuse)
    with pytest.raises(StoreError, match="cannot use store"):
        Store.open(root)
