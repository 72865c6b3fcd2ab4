"""Every registration checks the DiffIDs an image claims against its layer blobs, stored ones
too (issue 13, finding 8): an image naming layer A's blob under layer C's DiffID would `run`
with C's files while `inspect` and `save` show A's."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from minibuild.layer import unpack
from minibuild.oci.digest import Digest
from minibuild.store.layout import Store
from minibuild.store.staging import IntakeError
from minibuild.transfer import archive, remote
from minibuild.transfer.registry import Client
from tests.unit.transfer.test_archive import file_entry, image_blobs, oci_archive, sha, snapshot

LAYER_A = [file_entry("who", b"A\n")]
LAYER_C = [file_entry("who", b"C\n")]


def load(store: Store, data: bytes):
    return archive.load(store, io.BytesIO(data), "test.tar")


def lying_image(claimed: str, *layer_blobs: dict) -> tuple[dict[str, bytes], str]:
    """Blobs of an image whose layers are the layer blobs of `layer_blobs` (one image's blobs
    each) but whose config claims `claimed` as every DiffID; the manifest hex."""
    layers = []
    for blobs in layer_blobs:
        manifest = next(json.loads(b) for b in blobs.values() if b.startswith(b'{"schemaVersion"'))
        layers.append(manifest["layers"][0])
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [claimed] * len(layers)},
                         "history": [{"created_by": "lie"}] * len(layers)}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{sha(config)}", "size": len(config)},
                           "layers": layers}).encode()
    return {sha(config): config, sha(manifest): manifest}, sha(manifest)


def diff_id_of(blobs: dict[str, bytes]) -> str:
    config = next(json.loads(b) for b in blobs.values() if b.startswith(b'{"architecture"'))
    return config["rootfs"]["diff_ids"][0]


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as s:
        yield s


@pytest.fixture
def a_and_c(store):
    """The store holds a:1 and c:1; their blobs."""
    a, a_manifest, _ = image_blobs(LAYER_A)
    c, c_manifest, _ = image_blobs(LAYER_C)
    load(store, oci_archive(a, a_manifest, ref="a:1"))
    load(store, oci_archive(c, c_manifest, ref="c:1"))
    return a, c


def test_load_refuses_a_stored_layer_named_under_another_diff_id(store, a_and_c):
    a, c = a_and_c
    blobs, manifest_hex = lying_image(diff_id_of(c), a)
    before = snapshot(store.root)
    with pytest.raises(IntakeError, match=f"unpacks to DiffID {diff_id_of(a)}"):
        load(store, oci_archive(blobs, manifest_hex, ref="evil:1"))  # A's blob not even shipped
    assert snapshot(store.root) == before
    with pytest.raises(IntakeError, match="unpacks to DiffID"):
        load(store, oci_archive({**blobs, **a}, manifest_hex, ref="evil:1"))  # shipped: same
    assert [name for name, _ in store.tags()] == ["a:1", "c:1"]


def test_one_archive_cannot_name_a_second_blob_under_a_diff_id_it_checked(store):
    a, a_manifest, _ = image_blobs(LAYER_A)
    c, _, _ = image_blobs(LAYER_C)
    blobs, manifest_hex = lying_image(diff_id_of(a), a, c)  # layer 0 true, layer 1 C's blob
    with pytest.raises(IntakeError, match="unpacks to DiffID"):
        load(store, oci_archive({**a, **c, **blobs}, manifest_hex, ref="evil:1"))
    assert store.tags() == []


def test_a_checked_blob_is_recorded_so_the_next_load_does_not_read_it(store, monkeypatch):
    a, a_manifest, _ = image_blobs(LAYER_A)
    load(store, oci_archive(a, a_manifest, ref="a:1"))
    image = store.load_image(store.resolve("a:1")[1])
    assert store.layer_dirs.verified(image.layers[0])
    reads = []
    monkeypatch.setattr(unpack, "summarize_layer", lambda *args: reads.append(args) or (None, None))
    load(store, oci_archive(a, a_manifest, ref="again:1"))
    assert reads == []


def test_a_store_without_the_record_reads_the_stored_blob_and_records_it(store, a_and_c):
    a, c = a_and_c
    image = store.load_image(store.resolve("a:1")[1])
    store.layer_dirs.summary_path(image.layers[0].diff_id).unlink()  # as an older minibuild left it
    assert not store.layer_dirs.verified(image.layers[0])
    a_manifest = next(h for h, b in a.items() if b.startswith(b'{"schemaVersion"'))
    load(store, oci_archive(a, a_manifest, ref="again:1"))
    assert store.layer_dirs.verified(image.layers[0])


def test_the_record_is_per_media_type(store, a_and_c):
    a, _ = a_and_c
    image = store.load_image(store.resolve("a:1")[1])
    layer = image.layers[0]
    relabelled = type(layer)(type(layer.descriptor)("application/vnd.oci.image.layer.v1.tar+zstd",
                                                    layer.descriptor.digest, layer.descriptor.size),
                             layer.diff_id)
    assert not store.layer_dirs.verified(relabelled)
    docker_name = type(layer)(type(layer.descriptor)("application/vnd.docker.image.rootfs.diff.tar.gzip",
                                                     layer.descriptor.digest, layer.descriptor.size),
                              layer.diff_id)
    assert store.layer_dirs.verified(docker_name)


def test_pull_refuses_a_stored_layer_named_under_another_diff_id(store, a_and_c):
    a, c = a_and_c
    blobs, manifest_hex = lying_image(diff_id_of(c), a)

    def handler(request: httpx.Request) -> httpx.Response:
        if "/manifests/" in request.url.path:
            return httpx.Response(200, content=blobs[manifest_hex],
                                  headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        hex_ = request.url.path.rsplit(":", 1)[-1]
        return httpx.Response(200, content={**blobs, **a}[hex_])

    client = Client("reg.example:5000", transport=httpx.MockTransport(handler), backoff=0, credentials=None)
    with pytest.raises(IntakeError, match="unpacks to DiffID"):
        remote.pull(store, "127.0.0.1:1/evil:1", client=client)
    assert [name for name, _ in store.tags()] == ["a:1", "c:1"]
    assert not store.has_blob(Digest(manifest_hex))
