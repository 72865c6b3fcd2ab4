"""`save` checks every blob against its digest as it copies it (issue 13, finding 12): a blob
that no longer matches ends the save with one error naming it, and no archive file is left."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibuild.errors import StoreError
from minibuild.store.layout import Store
from minibuild.transfer import archive, docker_archive
from minibuild.transfer.oci_archive import save as save_oci
from tests.unit.transfer.test_archive import GOOD_LAYER, image_blobs, oci_archive

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as s:
        blobs, manifest_hex, _ = image_blobs(GOOD_LAYER)
        archive.load(s, io.BytesIO(oci_archive(blobs, manifest_hex)), "good.tar")
        yield s


def damage(store: Store, which: str):
    """Flip the last byte of the image's layer or config blob (same size, other bytes)."""
    desc = store.resolve("app:1.0")[1]
    image = store.load_image(desc)
    manifest = store.read_json(desc.digest)
    digest = image.layers[0].descriptor.digest if which == "layer" else \
        type(desc.digest).parse(manifest["config"]["digest"])
    path = store.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return digest


def test_a_corrupt_layer_blob_stops_an_oci_save(store):
    digest = damage(store, "layer")
    with pytest.raises(StoreError, match=f"blob {digest} is corrupt"):
        save_oci(store, [store.resolve("app:1.0")], io.BytesIO())


@pytest.mark.parametrize("writer", [save_oci, docker_archive.save])
def test_a_corrupt_config_blob_stops_both_formats(store, writer):
    digest = damage(store, "config")
    with pytest.raises(StoreError, match=f"blob {digest} is corrupt"):
        writer(store, [store.resolve("app:1.0")], io.BytesIO())


def test_a_missing_blob_is_an_error_not_a_traceback(store):
    image = store.load_image(store.resolve("app:1.0")[1])
    store.blob_path(image.layers[0].descriptor.digest).unlink()
    with pytest.raises(StoreError, match="is missing"):
        save_oci(store, [store.resolve("app:1.0")], io.BytesIO())


def test_the_same_blob_twice_is_copied_once_and_not_mistaken_for_corrupt(store):
    out = io.BytesIO()
    chosen = store.resolve("app:1.0")
    save_oci(store, [chosen, ("again:1", chosen[1])], out)
    assert len(out.getvalue()) > 0


def test_cli_save_of_a_corrupt_blob_is_one_line_and_leaves_no_file(store, tmp_path):
    digest = damage(store, "layer")
    target = tmp_path / "out.tar"
    env = {**os.environ, "MINIBUILD_ROOT": str(store.root), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "minibuild", "save", "-o", str(target), "app:1.0"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[0].startswith(f"error: blob {digest} is corrupt")
    assert not target.exists() and not list(tmp_path.glob(".out.tar*"))
