"""Issue 13, finding 8, as an attacker would try it: an archive whose manifest names layer A's
blob (already in the store) under the DiffID of layer C (also in the store). Before, `load`
skipped the check for a stored blob, so the image loaded: `run` mounted C's dir while `inspect`
and `save` showed A's blob, and neither `fsck` nor `fsck --deep` said a thing. Now the load is
refused in one line, and a store an older minibuild left that way fails both fsck passes."""

from __future__ import annotations

import json
import os

import pytest

from minibuild.oci.image import History, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from tests.conftest import Minibuild
from tests.integration.test_hostile_archives import listing
from tests.unit.transfer.test_archive import file_entry, image_blobs, oci_archive
from tests.unit.transfer.test_diffids import diff_id_of, lying_image

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path) -> tuple[Minibuild, dict, dict]:
    """A store holding a:1 (/who says A) and c:1 (/who says C), loaded from archives; their blobs."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mb = Minibuild(tmp_path / "store")
    found = []
    for name, text in (("a", b"A\n"), ("c", b"C\n")):
        blobs, manifest_hex, _ = image_blobs([file_entry("who", text)])
        path = tmp_path / f"{name}.tar"
        path.write_bytes(oci_archive(blobs, manifest_hex, ref=f"{name}:1"))
        mb.run("load", "-i", str(path))
        found.append(blobs)
    return mb, found[0], found[1]


def test_load_refuses_a_stored_blob_under_another_layers_diff_id(store, tmp_path):
    mb, a, c = store
    blobs, manifest_hex = lying_image(diff_id_of(c), a)
    evil = tmp_path / "evil.tar"
    evil.write_bytes(oci_archive(blobs, manifest_hex, ref="evil:1"))  # A's blob is not shipped
    before = listing(mb.root)
    result = mb.run("load", "-i", str(evil), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert f"unpacks to DiffID {diff_id_of(a)}" in lines[0] and diff_id_of(c) in lines[0]
    assert listing(mb.root) == before
    assert "evil" not in mb.run("images").stdout
    assert mb.run("fsck", check=False).returncode == 0


@pytest.mark.parametrize("deep", [False, True])
def test_fsck_finds_a_store_an_older_load_left_that_way(store, deep):
    mb, a, c = store
    with Store.open(mb.root) as opened:
        layer_a = opened.load_image(opened.resolve("a:1")[1]).layers[0]
        layer_c = opened.load_image(opened.resolve("c:1")[1]).layers[0]
        image = Image().append(Layer(layer_a.descriptor, layer_c.diff_id), History("ADD lie"))
        opened.tag(Reference.parse("evil:1"), opened.write_image(image))
    inspected = json.loads(mb.run("inspect", "evil:1").stdout)[0]
    assert inspected["RootFS"]["Layers"] == [str(layer_c.diff_id)]  # what run mounts
    result = mb.run("fsck", *(["--deep"] if deep else []), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"tag evil:1: layer 0: blob {layer_a.descriptor.digest} decompresses to DiffID " \
           f"{layer_a.diff_id}" in result.stdout + result.stderr
