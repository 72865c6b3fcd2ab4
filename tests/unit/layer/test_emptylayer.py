"""The empty layer: BuildKit's bytes exactly."""

from __future__ import annotations

import gzip
import hashlib
import io

import pytest

from minibuild.layer.compression import Compression, open_uncompressed
from minibuild.layer.emptylayer import EMPTY_DIFF_ID, empty_layer_blob, write_empty_layer
from minibuild.layer.unpack import unpack_layer


def test_the_diff_id_is_docker_s_empty_tar():
    # moby layer/empty.go: DigestSHA256EmptyTar
    assert str(EMPTY_DIFF_ID) == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def test_the_gzip_blob_is_the_one_buildkit_built_images_share():
    blob = empty_layer_blob(Compression.GZIP)
    assert len(blob) == 32
    assert hashlib.sha256(blob).hexdigest() == \
        "4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"
    assert gzip.decompress(blob) == bytes(1024)


# zstd:chunked is a push-time conversion (zstdchunked.py): a build never writes a layer with it
@pytest.mark.parametrize("compression", [c for c in Compression if c is not Compression.ZSTD_CHUNKED])
def test_every_compression_holds_the_empty_tar(compression, tmp_path):
    sink = io.BytesIO()
    written = write_empty_layer(sink, compression)
    assert written.diff_id == EMPTY_DIFF_ID and written.empty and written.tar_size == 1024
    assert written.media_type == compression.media_type
    assert open_uncompressed(io.BytesIO(sink.getvalue()), written.media_type).read() == bytes(1024)
    diff_id, summary = unpack_layer(io.BytesIO(sink.getvalue()), written.media_type, tmp_path)
    assert diff_id == EMPTY_DIFF_ID and list(tmp_path.iterdir()) == []
