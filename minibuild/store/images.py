"""Images as blobs: an image's config and manifest written to the content store, read back."""

from __future__ import annotations

from minibuild.errors import StoreError
from minibuild.oci.image import Config, Descriptor, Image, Layer, Manifest, canonical_json
from minibuild.oci.mediatypes import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.store.ports import BlobStore


def write_image(blobs: BlobStore, image: Image) -> Descriptor:
    """Store the config and the manifest of an image; return the manifest descriptor."""
    config = blobs.put_bytes(image.config_bytes(), CONFIG_MEDIA_TYPE)
    manifest = image.manifest(config)
    return blobs.put_bytes(canonical_json(manifest.to_json()), MANIFEST_MEDIA_TYPE)


def load_image(blobs: BlobStore, manifest_descriptor: Descriptor) -> Image:
    """Read an image (manifest + config) from its manifest descriptor."""
    try:
        manifest = Manifest.from_json(blobs.read_json(manifest_descriptor.digest))
        config = Config.from_json(blobs.read_json(manifest.config.digest))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"image {manifest_descriptor.digest} is not a readable image "
                         f"manifest and config ({type(exc).__name__}: {exc})") from None
    if len(config.diff_ids) != len(manifest.layers):
        raise StoreError(f"image {manifest_descriptor.digest}: {len(manifest.layers)} layers "
                         f"but {len(config.diff_ids)} diff_ids")
    layers = tuple(Layer(d, i) for d, i in zip(manifest.layers, config.diff_ids))
    return Image(config=config, layers=layers)
