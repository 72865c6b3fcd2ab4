"""The one compression module: magic numbers, decompressing readers, the layer compressor."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import pytest
import zstandard

from minibuild.errors import LayerError
from minibuild.layer import compression
from minibuild.layer.compression import Compression, Compressor
from minibuild.oci import mediatypes

DATA = b"".join(b"line %d of a tar that is not a tar\n" % i for i in range(5000))
COMPRESSED = {
    compression.GZIP: gzip.compress(DATA),
    compression.BZIP2: bz2.compress(DATA),
    compression.XZ: lzma.compress(DATA),
    compression.ZSTD: zstandard.ZstdCompressor().compress(DATA),
}


class _Unpeekable(io.RawIOBase):
    """A pipe-like stream: read() only, no peek, no seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(min(len(buffer), 3))  # short reads, as a pipe gives
        buffer[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_sniff_names_each_compression_by_its_magic_number(kind):
    assert compression.sniff(COMPRESSED[kind][:6]) == kind


@pytest.mark.parametrize("head", [b"", b"\x1f", DATA[:6], b"BZ", bytes(512)])
def test_sniff_finds_nothing_in_plain_or_short_input(head):
    assert compression.sniff(head) is None


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_a_sniffed_stream_decompresses_from_its_first_byte(kind):
    found, reader = compression.sniff_stream(io.BytesIO(COMPRESSED[kind]))
    assert found == kind
    assert compression.decompressing(reader, found).read() == DATA


def test_sniffing_a_stream_without_peek_consumes_nothing():
    found, reader = compression.sniff_stream(_Unpeekable(COMPRESSED[compression.GZIP]))
    assert found == compression.GZIP
    assert compression.decompressing(reader, found).read() == DATA
    plain, reader = compression.sniff_stream(_Unpeekable(DATA))
    assert plain is None and compression.decompressing(reader, None).read() == DATA


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_closing_a_decompressing_reader_leaves_the_raw_stream_open(kind):
    raw = io.BytesIO(COMPRESSED[kind])
    with compression.decompressing(raw, kind) as stream:
        stream.read(10)
    assert not raw.closed


@pytest.mark.parametrize("media_type, blob", [
    (mediatypes.LAYER_TAR, DATA),
    (mediatypes.LAYER_TAR_GZIP, COMPRESSED[compression.GZIP]),
    (mediatypes.LAYER_TAR_ZSTD, COMPRESSED[compression.ZSTD]),
    (mediatypes.DOCKER_LAYER_TAR_GZIP, COMPRESSED[compression.GZIP]),
    (mediatypes.DOCKER_FOREIGN_LAYER_TAR_GZIP, COMPRESSED[compression.GZIP]),
    (mediatypes.NONDISTRIBUTABLE_LAYER_TAR_ZSTD, COMPRESSED[compression.ZSTD]),
])
def test_a_layer_opens_by_its_media_type(media_type, blob):
    assert compression.open_uncompressed(io.BytesIO(blob), media_type).read() == DATA


def test_a_layer_of_an_unknown_media_type_is_refused():
    with pytest.raises(LayerError, match="unsupported layer media type"):
        compression.open_uncompressed(io.BytesIO(DATA), "application/x-tar+xz")


def test_zstd_frames_written_one_after_another_read_as_one_stream():
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(DATA[:100]) + cctx.compress(DATA[100:])
    assert compression.open_uncompressed(io.BytesIO(blob), mediatypes.LAYER_TAR_ZSTD).read() == DATA


@pytest.mark.parametrize("kind, media_type", [
    (compression.GZIP, mediatypes.LAYER_TAR_GZIP),
    (compression.ZSTD, mediatypes.LAYER_TAR_ZSTD),
    (compression.XZ, mediatypes.LAYER_TAR),  # no layer media type says xz
    (compression.BZIP2, mediatypes.LAYER_TAR),
])
def test_a_stored_blob_is_labelled_by_its_first_bytes(kind, media_type):
    assert compression.stored_media_type(COMPRESSED[kind][:4]) == media_type
    assert compression.stored_media_type(DATA[:4]) == mediatypes.LAYER_TAR


@pytest.mark.parametrize("kind", [compression.GZIP, compression.ZSTD, compression.XZ])
def test_a_corrupt_stream_raises_one_of_the_decode_errors(kind):
    blob = bytearray(COMPRESSED[kind])
    blob[len(blob) // 2:] = bytes(len(blob) - len(blob) // 2)
    with pytest.raises(compression.DECODE_ERRORS):
        compression.decompressing(io.BytesIO(bytes(blob)), kind).read()


def test_compression_parses_names_and_names_media_types():
    assert Compression.parse(" ZSTD ") is Compression.ZSTD
    assert Compression.GZIP.media_type == mediatypes.LAYER_TAR_GZIP
    assert Compression.NONE.media_type == mediatypes.LAYER_TAR
    with pytest.raises(LayerError, match="unknown compression 'xz'"):
        Compression.parse("xz")


def _compress(kind: Compression, pieces: list[bytes], reproducible: bool = False) -> bytes:
    sink = io.BytesIO()
    out = Compressor(sink, kind, reproducible=reproducible)
    for piece in pieces:
        out.write(piece)
    out.finish()
    assert not sink.closed
    return sink.getvalue()


@pytest.mark.parametrize("kind", [c for c in Compression if c is not Compression.ZSTD_CHUNKED])  # chunked: zstdchunked.py
def test_the_compressor_round_trips_and_is_deterministic(kind):
    pieces = [DATA[:1000], DATA[1000:], b""]
    blob = _compress(kind, pieces)
    assert blob == _compress(kind, [DATA])  # how the tar is cut into pieces does not matter
    assert compression.open_uncompressed(io.BytesIO(blob), kind.media_type).read() == DATA


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("reproducible", [False, True])
def test_gzip_blobs_do_not_depend_on_how_the_tar_is_cut(reproducible):
    # ISA-L ends a deflate block where a piece ends: the compressor re-cuts its input.
    big = DATA * 20  # several CHUNKs
    blobs = {_compress(Compression.GZIP, _cut(big, size), reproducible)
             for size in (compression.CHUNK, 65536, 1_000_003, 777_777, len(big))}
    assert len(blobs) == 1
    assert gzip.decompress(blobs.pop()) == big


def test_a_reproducible_gzip_blob_is_zlibs_own_output():
    import zlib

    deflate = zlib.compressobj(compression.ZLIB_LEVEL, zlib.DEFLATED, 31)
    assert _compress(Compression.GZIP, [DATA], True) == deflate.compress(DATA) + deflate.flush()


@pytest.mark.parametrize("reproducible", [False, True])
def test_the_gzip_header_has_no_time_and_no_name(reproducible):
    blob = _compress(Compression.GZIP, [DATA], reproducible)
    assert blob[:4] == b"\x1f\x8b\x08\x00"  # FLG 0: no FNAME field
    assert blob[4:8] == bytes(4)  # MTIME 0


@pytest.mark.parametrize("kind", [c for c in Compression if c is not Compression.ZSTD_CHUNKED])  # chunked: zstdchunked.py
def test_compressed_chunks_compress_a_reader_deterministically(kind):
    blob = b"".join(compression.compressed_chunks(io.BytesIO(DATA * 40), kind))
    assert compression.open_uncompressed(io.BytesIO(blob), kind.media_type).read() == DATA * 40
    assert blob == b"".join(compression.compressed_chunks(io.BytesIO(DATA * 40), kind))
    assert blob == _compress(kind, [DATA * 40])
