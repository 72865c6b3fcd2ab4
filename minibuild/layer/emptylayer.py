"""The layer of a step that changed no file, byte for byte as BuildKit writes it.

BuildKit gives every RUN, COPY/ADD and WORKDIR (but `WORKDIR /`) a layer: each is a new
snapshot, and the differ writes the empty diff as a tar holding only Go's end-of-archive blocks
(1024 zero bytes, no record padding). Its DiffID is Docker's `DigestSHA256EmptyTar`
(sha256:5f70bf18...), and gzipped by Go's compress/gzip it is the 32-byte blob sha256:4f4fb700...
that BuildKit-built images on every registry share. We write the same bytes, so an image's
diff_ids match docker build's and the blob is one registries already hold.
"""

from __future__ import annotations

import io

from minibuild.layer.compression import Compression, Compressor
from minibuild.layer.snapshot import LayerSummary, LayerWrite
from minibuild.layer.tar import BLOCK
from minibuild.oci.digest import Digest

EMPTY_TAR = bytes(2 * BLOCK)
EMPTY_DIFF_ID = Digest.of(EMPTY_TAR)  # sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef
# Go's compress/gzip at the default level (BuildKit's differ): a fixed-Huffman block, then the
# empty final stored block Go's Close writes; header without time or name, OS 255.
GO_GZIP_EMPTY_TAR = bytes.fromhex(
    "1f8b08000000000000ff621805a360148c5800080000ffff2eafb5ef00040000")


def empty_layer_blob(compression: Compression) -> bytes:
    """The empty tar as a blob: Go's gzip bytes for gzip, our compressor's for zstd."""
    if compression is Compression.GZIP:
        return GO_GZIP_EMPTY_TAR
    sink = io.BytesIO()
    out = Compressor(sink, compression)
    out.write(EMPTY_TAR)
    out.finish()
    return sink.getvalue()


def write_empty_layer(sink, compression: Compression) -> LayerWrite:
    """Write the empty layer's blob into `sink` (as write_layer writes a snapshot)."""
    sink.write(empty_layer_blob(compression))
    return LayerWrite(diff_id=EMPTY_DIFF_ID, media_type=compression.media_type,
                      tar_size=len(EMPTY_TAR), summary=LayerSummary((), (), (), 0), empty=True)
