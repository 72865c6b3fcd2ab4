"""Every compression minibuild reads or writes, in one module: the only user of zstandard, isal
(ISA-L's gzip), gzip, zlib's deflate, lzma and bz2.

A stored layer is gzip (the default: every client reads it), zstd or a plain tar (its media type
says which). What comes from outside (ADD's local archives, `import` tarballs, a docker archive's
layers) is recognised by its magic number, never by its name: gzip, bzip2, xz or zstd.

gzip goes through ISA-L (the `isal` package), several times faster than zlib at a similar ratio,
both ways. ISA-L's deflate output is not a function of the input alone: it picks its hash and
match finder by CPU (`igzip/igzip_multibinary.asm`: a CRC32 hash with SSE4.2, a multiplicative
one without; another level-3 match finder with AVX2 and AVX-512), and its block boundaries follow
the pieces it is fed. So the compressor feeds it fixed-size pieces (the same bytes on one machine
whatever the caller's chunking), and a reproducible layer (`SOURCE_DATE_EPOCH`) is gzipped
through zlib instead, whose output depends on neither (the same zlib version gives the same bytes
on every CPU; a distribution that swaps in zlib-ng would not).
"""

from __future__ import annotations

import bz2
import enum
import gzip
import hashlib
import io
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard
from isal import igzip, isal_zlib

from minibuild.errors import LayerError
from minibuild.oci import mediatypes
from minibuild.oci.digest import Digest

CHUNK = 1 << 20  # read/flush granularity: big enough that per-call overheads vanish
GZIP, BZIP2, XZ, ZSTD = "gzip", "bzip2", "xz", "zstd"  # what sniff() recognises
_MAGIC = ((b"\x1f\x8b", GZIP), (b"BZh", BZIP2), (b"\xfd7zXZ\x00", XZ), (b"\x28\xb5\x2f\xfd", ZSTD))
_MAGIC_LEN = 6
# What a broken compressed stream raises while it is read (bz2 raises a plain OSError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    zstandard.ZstdError, gzip.BadGzipFile, zlib.error, isal_zlib.error, lzma.LZMAError, EOFError)
ISAL_LEVEL = 1  # ISA-L's levels run 0-3; 1 is pigz -1's speed at about zlib -6's ratio
ZLIB_LEVEL = 1  # the reproducible path: about ISA-L 1's ratio, so the flag changes speed, not size


class Compression(enum.Enum):
    """How a layer tar is compressed in the store."""

    ZSTD = "zstd"
    ZSTD_CHUNKED = "zstd:chunked"  # zstd plus a table of contents (zstdchunked.py); push only
    GZIP = "gzip"
    NONE = "none"

    @property
    def media_type(self) -> str:
        """The OCI layer media type for this compression."""
        return _MEDIA_TYPES[self]

    @classmethod
    def parse(cls, text: str) -> Compression:
        """Parse "zstd", "gzip" or "none"; raise LayerError otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise LayerError(f"unknown compression {text!r} (want zstd, zstd:chunked, gzip or none)") from None


_MEDIA_TYPES = {Compression.ZSTD: mediatypes.LAYER_TAR_ZSTD, Compression.ZSTD_CHUNKED: mediatypes.LAYER_TAR_ZSTD,
                Compression.GZIP: mediatypes.LAYER_TAR_GZIP, Compression.NONE: mediatypes.LAYER_TAR}
# The layer media types minibuild reads, and how each is compressed.
_LAYER_COMPRESSION = {
    mediatypes.LAYER_TAR: Compression.NONE,
    mediatypes.LAYER_TAR_GZIP: Compression.GZIP,
    mediatypes.LAYER_TAR_ZSTD: Compression.ZSTD,
    mediatypes.NONDISTRIBUTABLE_LAYER_TAR: Compression.NONE,
    mediatypes.NONDISTRIBUTABLE_LAYER_TAR_GZIP: Compression.GZIP,
    mediatypes.NONDISTRIBUTABLE_LAYER_TAR_ZSTD: Compression.ZSTD,
    mediatypes.DOCKER_LAYER_TAR_GZIP: Compression.GZIP,
    mediatypes.DOCKER_FOREIGN_LAYER_TAR_GZIP: Compression.GZIP,
}


# -- reading ---------------------------------------------------------------------------------


def sniff(head: bytes) -> str | None:
    """The compression a stream's first bytes announce (GZIP, BZIP2, XZ or ZSTD), or None."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def sniff_stream(stream: BinaryIO) -> tuple[str | None, BinaryIO]:
    """The compression a stream starts with, peeked without consuming it, and the stream to read
    on with (`stream` itself when it can peek, else a buffered reader over it)."""
    reader = stream if hasattr(stream, "peek") else io.BufferedReader(stream, CHUNK)  # type: ignore[arg-type]
    return sniff(reader.peek(_MAGIC_LEN)[:_MAGIC_LEN]), reader  # type: ignore[attr-defined]


def decompressing(raw: BinaryIO, kind: str | None) -> BinaryIO:
    """A reader of `raw`'s bytes decompressed as `kind` (None: `raw` itself); closing a
    decompressing reader leaves `raw` open."""
    if kind == ZSTD:
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True, closefd=False)
    if kind == GZIP:
        return igzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == BZIP2:
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == XZ:
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def open_uncompressed(blob: BinaryIO, media_type: str) -> BinaryIO:
    """A reader of a layer's tar bytes, decompressing by media type (zstd, gzip or plain)."""
    compression = layer_compression(media_type)
    return decompressing(blob, None if compression is Compression.NONE else compression.value)


def layer_compression(media_type: str) -> Compression:
    """How a layer of this media type is compressed; LayerError for a type minibuild cannot read."""
    compression = _LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise LayerError(f"unsupported layer media type {media_type!r}")
    return compression


def stored_media_type(head: bytes) -> str:
    """The layer media type of a blob that starts with `head`: a gzip or zstd stream is stored
    as it is (tar+gzip, tar+zstd); anything else is taken for a plain tar."""
    kind = sniff(head)
    return Compression(kind).media_type if kind in (GZIP, ZSTD) else mediatypes.LAYER_TAR


# -- writing ---------------------------------------------------------------------------------


class Compressor:
    """Feeds tar bytes to the sink, compressed; never closes the sink.

    The same tar gives the same blob on one machine: zstd at level 3; gzip through ISA-L fed in
    CHUNK-sized pieces, or through zlib when `reproducible` (the same blob on every machine); the
    gzip header carries no time and no file name (gzip.GzipFile would write both).
    """

    def __init__(self, sink: BinaryIO, compression: Compression, *, reproducible: bool = False) -> None:
        self._sink = sink
        self._zstd = None
        self._deflate = None
        self._pending: bytearray | None = None  # ISA-L's input, cut into CHUNK-sized pieces
        if compression is Compression.ZSTD_CHUNKED:
            raise LayerError("zstd:chunked needs the whole tar (layer/zstdchunked.py), not a stream")
        if compression is Compression.ZSTD:
            cctx = zstandard.ZstdCompressor(level=3, threads=-1)
            self._zstd = cctx.stream_writer(sink, closefd=False, write_size=CHUNK)
        elif compression is Compression.GZIP and reproducible:
            # wbits=31: zlib writes the gzip header itself, with mtime 0 and no file name.
            self._deflate = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, 31)
        elif compression is Compression.GZIP:
            self._deflate = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, 31)
            self._pending = bytearray()

    def write(self, data: bytes) -> None:
        """Compress and forward one piece of tar."""
        if self._zstd is not None:
            self._zstd.write(data)
        elif self._pending is not None:
            self._pending += data
            if len(self._pending) >= CHUNK:
                self._feed_whole_chunks()
        elif self._deflate is not None:
            self._emit(self._deflate.compress(data))
        else:
            self._sink.write(data)  # chunks are never modified once handed over

    def _feed_whole_chunks(self) -> None:
        """Give ISA-L every whole CHUNK pending and keep the rest (a fresh buffer, so no view of
        the old one is ever resized)."""
        view = memoryview(self._pending)
        whole = len(view) - len(view) % CHUNK
        for start in range(0, whole, CHUNK):
            self._emit(self._deflate.compress(view[start:start + CHUNK]))
        self._pending = bytearray(view[whole:])
        view.release()

    def _emit(self, out: bytes) -> None:
        if out:
            self._sink.write(out)

    def finish(self) -> None:
        """End the compressed stream (zstd frame / gzip trailer)."""
        if self._zstd is not None:
            self._zstd.flush(zstandard.FLUSH_FRAME)
            self._zstd.close()
            return
        if self._pending:
            self._emit(self._deflate.compress(bytes(self._pending)))
            self._pending = bytearray()
        if self._deflate is not None:
            self._emit(self._deflate.flush())


class ZstdFrames:
    """Independent zstd frames and skippable frames, one after another, to a sink; `offset` is
    how many bytes went out so far. Their concatenation decompresses like one zstd stream (a
    skippable frame decompresses to nothing): zstd:chunked's layout."""

    SKIPPABLE_MAGIC = b"\x50\x2a\x4d\x18"

    def __init__(self, sink: BinaryIO, level: int = 3) -> None:
        self._sink = sink
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._frame = None
        self.offset = 0

    def write(self, data: bytes) -> None:
        """Compress into the current frame (begun on the first write after end_frame)."""
        if not data:
            return
        if self._frame is None:
            self._frame = self._cctx.compressobj()
        self._emit(self._frame.compress(data))

    def end_frame(self) -> None:
        """Close the current frame, if one is open: what follows starts at `offset`."""
        if self._frame is not None:
            self._emit(self._frame.flush())
            self._frame = None

    def skippable(self, data: bytes) -> None:
        """A skippable frame holding `data` (decoders skip it)."""
        self.end_frame()
        self._emit(self.SKIPPABLE_MAGIC + len(data).to_bytes(4, "little") + data)

    def compressed(self, data: bytes) -> bytes:
        """`data` as one stand-alone zstd frame (for a skippable frame's contents)."""
        return self._cctx.compress(data)

    def _emit(self, out: bytes) -> None:
        if out:
            self._sink.write(out)
            self.offset += len(out)


class _ChunkList:
    """A sink that collects what it is given."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Keep one piece."""
        self.chunks.append(bytes(data))


def compressed_chunks(reader: BinaryIO, compression: Compression) -> Iterator[bytes]:
    """`reader`'s bytes compressed as `compression`, in chunks (read lazily): how `import` stores
    a tarball that comes in another compression, and how `push --compression` converts a layer."""
    sink = _ChunkList()
    out = Compressor(sink, compression)
    while data := reader.read(CHUNK):
        out.write(data)
        yield from sink.chunks
        sink.chunks.clear()
    out.finish()
    yield from sink.chunks


def convert(blob: BinaryIO, media_type: str, sink: BinaryIO, compression: Compression) -> Digest:
    """Write a stored layer into `sink` in another compression; return the DiffID of its tar
    (sha256 of the bytes decompressed), for the caller to check against the config's."""
    sha = hashlib.sha256()
    out = Compressor(sink, compression)
    reader = open_uncompressed(blob, media_type)
    while data := reader.read(CHUNK):
        sha.update(data)
        out.write(data)
    out.finish()
    return Digest.from_hash(sha)
