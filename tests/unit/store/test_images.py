"""Images as blobs: written as config + manifest, read back, refused when inconsistent."""

from __future__ import annotations

import pytest

from minibuild.errors import StoreError
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer, Manifest, canonical_json
from minibuild.oci.mediatypes import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.store import images
from minibuild.store.cas import Blobs
from minibuild.store.paths import StorePaths


@pytest.fixture
def blobs(tmp_path):
    paths = StorePaths.at(tmp_path)
    paths.blobs.mkdir(parents=True)
    return Blobs(paths, lambda: tmp_path)


def test_an_image_round_trips(blobs):
    layer = Layer(Descriptor("application/vnd.oci.image.layer.v1.tar", Digest.of(b"t"), 1), Digest.of(b"t"))
    image = Image().append(layer, History("COPY x", created="2024-01-01T00:00:00Z"))
    descriptor = images.write_image(blobs, image)
    assert descriptor.media_type == MANIFEST_MEDIA_TYPE
    manifest = Manifest.from_json(blobs.read_json(descriptor.digest))
    assert manifest.config.media_type == CONFIG_MEDIA_TYPE and manifest.layers == (layer.descriptor,)
    assert images.load_image(blobs, descriptor) == image
    assert images.write_image(blobs, image) == descriptor  # same image, same bytes


def test_a_manifest_and_config_that_disagree_are_refused(blobs):
    config = blobs.put_bytes(Image().config_bytes(), CONFIG_MEDIA_TYPE)  # no diff_ids
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar", Digest.of(b"t"), 1)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config.to_json(),
                "layers": [layer.to_json()]}
    descriptor = blobs.put_bytes(canonical_json(manifest), MANIFEST_MEDIA_TYPE)
    with pytest.raises(StoreError, match="1 layers but 0 diff_ids"):
        images.load_image(blobs, descriptor)


def test_a_blob_that_is_no_manifest_is_a_store_error(blobs):
    descriptor = blobs.put_bytes(b'{"schemaVersion": 2}', MANIFEST_MEDIA_TYPE)
    with pytest.raises(StoreError, match="not a readable image manifest and config"):
        images.load_image(blobs, descriptor)
