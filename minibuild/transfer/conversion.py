"""A stored layer in another compression, for archives and registries that want it so: written
to a scratch file, named by its new digest, checked against the DiffID the config records."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from minibuild.errors import StoreError
from minibuild.layer import compression
from minibuild.layer.compression import Compression
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Layer
from minibuild.store.layout import Store


class _HashingFile:
    """Writes through to a file, hashing what passes (the new blob's digest)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hash and write one piece."""
        self.sha.update(data)
        self.size += len(data)
        return self.file.write(data)


def needs_conversion(layer: Layer, wanted: Compression) -> bool:
    """Whether the layer is stored in another compression than `wanted`."""
    return compression.layer_compression(layer.descriptor.media_type) is not wanted


def convert_layer(store: Store, layer: Layer, wanted: Compression, scratch: Path) -> tuple[Descriptor, Path]:
    """The layer as a blob in `wanted` compression: its descriptor and the scratch file holding it
    (StoreError when the stored blob does not decompress to the layer's DiffID)."""
    path = scratch / f"{layer.diff_id.hex}.{wanted.value}"
    with open(store.blob_path(layer.descriptor.digest), "rb") as blob, open(path, "wb") as out:
        sink = _HashingFile(out)
        diff_id = compression.convert(blob, layer.descriptor.media_type, sink, wanted)
    if diff_id != layer.diff_id:
        path.unlink()
        raise StoreError(f"layer {layer.descriptor.digest} decompresses to DiffID {diff_id}, "
                         f"not {layer.diff_id}: the store is corrupt")
    return Descriptor(wanted.media_type, Digest.from_hash(sink.sha), sink.size), path
