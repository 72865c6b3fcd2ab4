"""The Store facade: opening and closing a store, its locks, and the pieces it forwards to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minibuild.errors import StoreError
from minibuild.fs.lock import FileLock
from minibuild.oci.digest import Digest
from minibuild.oci.image import History, Image
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store


def test_open_makes_the_layout_and_close_leaves_no_session(tmp_path):
    with Store.open(tmp_path) as store:
        assert store.root == tmp_path and store.paths.root == tmp_path
        for path in (store.paths.blobs, store.paths.layers, store.paths.meta, store.paths.run):
            assert path.is_dir()
        assert json.loads((tmp_path / "oci/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
        scratch = store.scratch("step")
        assert scratch.parent == store.session_dir() and scratch.is_dir()
    assert list((tmp_path / "run").iterdir()) == []  # the session went away with close()
    FileLock(tmp_path / "locks" / "gc", wait=False).release()  # and the in-use lock with it


def test_a_store_that_cannot_be_made_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StoreError, match="cannot use store at"):
        Store.open(tmp_path / "file")


def test_the_facade_forwards_to_its_pieces(tmp_path):
    with Store.open(tmp_path) as store:
        image = Image().append(None, History("ENV a=b"))
        descriptor = store.write_image(image)
        assert store.cas.has_blob(descriptor.digest) and store.has_blob(descriptor.digest)
        assert store.blob_path(descriptor.digest) == store.cas.blob_path(descriptor.digest)
        store.tag(Reference.parse("app:1.0"), descriptor)
        assert store.index.tags() == store.tags() and store.resolve("app:1.0")[1].digest == descriptor.digest
        assert store.load_image(descriptor).config.history == image.config.history
        diff_id = Digest.of(b"l")
        assert store.layer_path(diff_id) == store.layer_dirs.layer_path(diff_id)
        assert store.session_dir() == store.session.dir()
        assert store.untag("app:1.0") and store.tags() == []


def test_lock_exclusive_waits_for_no_one(tmp_path):
    with Store.open(tmp_path) as first:
        with Store.open(tmp_path):  # another user of the store (its own lock file open)
            with pytest.raises(StoreError, match="in use by another minibuild process"):
                first.lock_exclusive()
        first.lock_exclusive()  # alone now
        with pytest.raises(BlockingIOError):
            FileLock(tmp_path / "locks" / "gc", exclusive=False, wait=False)
    FileLock(tmp_path / "locks" / "gc", wait=False).release()


def test_a_refused_exclusive_lock_keeps_the_store_in_use(tmp_path):
    with Store.open(tmp_path) as first, Store.open(tmp_path) as second:
        with pytest.raises(StoreError):
            first.lock_exclusive()
        second.close()
        with pytest.raises(BlockingIOError):  # `first` still holds its shared lock
            FileLock(tmp_path / "locks" / "gc", wait=False)


def test_dead_sessions_are_removed_live_ones_kept(tmp_path):
    Store.open(tmp_path).close()
    dead = tmp_path / "run" / "99999-dead"
    (dead / "upper").mkdir(parents=True)
    (dead / ".lock").touch()
    # A live session held by another process keeps its lock.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from minibuild.store.layout import Store\n"
        f"s = Store.open(Path({str(tmp_path)!r})); s.session_dir(); print('ready', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with Store.open(tmp_path):
            remaining = [p.name for p in (tmp_path / "run").iterdir()]
        assert "99999-dead" not in remaining and len(remaining) == 1
    finally:
        holder.kill()
        holder.wait()


def test_history_and_images_fast_commands_do_not_import_heavy_modules(tmp_path):
    code = ("import sys; from minibuild.cli import app as cli\n"
            "sys.argv = ['minibuild', '--root', sys.argv[1], 'images']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('lark', 'rich', 'zstandard', 'minibuild.build.engine', "
            "'minibuild.layer.unpack') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "MINIBUILD_ROOT": str(tmp_path)})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr
