"""A stored layer in another compression, for archives and registries that want it so: written
to a scratch file, named by its new digest, checked against the DiffID the config records."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from minibuild.errors import StoreError
from minibuild.layer import compression, zstdchunked
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
    """Whether the layer is stored in another compression than `wanted` (zstd:chunked: a zstd
    layer without its table of contents is another compression)."""
    if wanted is Compression.ZSTD_CHUNKED:
        return layer.descriptor.annotation(zstdchunked.CHECKSUM_KEY) is None
    return compression.layer_compression(layer.descriptor.media_type) is not wanted


def convert_layer(store: Store, layer: Layer, wanted: Compression, scratch: Path) -> tuple[Descriptor, Path]:
    """The layer as a blob in `wanted` compression: its descriptor and the scratch file holding it
    (StoreError when the stored blob does not decompress to the layer's DiffID)."""
    if wanted is Compression.ZSTD_CHUNKED:
        return _to_zstd_chunked(store, layer, scratch)
    path = scratch / f"{layer.diff_id.hex}.{wanted.value}"
    with open(store.blob_path(layer.descriptor.digest), "rb") as blob, open(path, "wb") as out:
        sink = _HashingFile(out)
        diff_id = compression.convert(blob, layer.descriptor.media_type, sink, wanted)
    _check(layer, diff_id, path)
    return Descriptor(wanted.media_type, Digest.from_hash(sink.sha), sink.size), path


def _to_zstd_chunked(store: Store, layer: Layer, scratch: Path) -> tuple[Descriptor, Path]:
    """The tar first (zstd:chunked needs to seek in it), then the chunked blob with its
    annotations; the tar is checked against the DiffID on the way out and on the way back in."""
    tar, path = scratch / f"{layer.diff_id.hex}.tar", scratch / f"{layer.diff_id.hex}.zstd-chunked"
    with open(store.blob_path(layer.descriptor.digest), "rb") as blob, open(tar, "wb") as out:
        _check(layer, compression.convert(blob, layer.descriptor.media_type, out, Compression.NONE), tar)
    with open(path, "wb") as out:
        sink = _HashingFile(out)
        diff_id, annotations = zstdchunked.write(tar, sink)
    tar.unlink()
    _check(layer, diff_id, path)
    return Descriptor(Compression.ZSTD_CHUNKED.media_type, Digest.from_hash(sink.sha), sink.size, annotations), path


def _check(layer: Layer, diff_id: Digest, path: Path) -> None:
    if diff_id != layer.diff_id:
        path.unlink()
        raise StoreError(f"layer {layer.descriptor.digest} decompresses to DiffID {diff_id}, "
                         f"not {layer.diff_id}: the store is corrupt")
