"""Every compression minibuild reads or writes, in one module: the only user of zstandard, gzip,
zlib's deflate, lzma and bz2.

A stored layer is zstd, gzip or a plain tar (its media type says which). What comes from outside
(ADD's local archives, `import` tarballs, a docker archive's layers) is recognised by its magic
number, never by its name: gzip, bzip2, xz or zstd.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard

from minibuild.errors import LayerError
from minibuild.oci import mediatypes

CHUNK = 1 << 20  # read/flush granularity: big enough that per-call overheads vanish
GZIP, BZIP2, XZ, ZSTD = "gzip", "bzip2", "xz", "zstd"  # what sniff() recognises
_MAGIC = ((b"\x1f\x8b", GZIP), (b"BZh", BZIP2), (b"\xfd7zXZ\x00", XZ), (b"\x28\xb5\x2f\xfd", ZSTD))
_MAGIC_LEN = 6
# What a broken compressed stream raises while it is read (bz2 raises a plain OSError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    zstandard.ZstdError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, EOFError)


class Compression(enum.Enum):
    """How a layer tar is compressed in the store."""

    ZSTD = "zstd"
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
            raise LayerError(f"unknown compression {text!r} (want zstd, gzip or none)") from None


_MEDIA_TYPES = {Compression.ZSTD: mediatypes.LAYER_TAR_ZSTD, Compression.GZIP: mediatypes.LAYER_TAR_GZIP,
                Compression.NONE: mediatypes.LAYER_TAR}
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
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == BZIP2:
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == XZ:
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def open_uncompressed(blob: BinaryIO, media_type: str) -> BinaryIO:
    """A reader of a layer's tar bytes, decompressing by media type (zstd, gzip or plain)."""
    compression = _LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise LayerError(f"unsupported layer media type {media_type!r}")
    return decompressing(blob, None if compression is Compression.NONE else compression.value)


def stored_media_type(head: bytes) -> str:
    """The layer media type of a blob that starts with `head`: a gzip or zstd stream is stored
    as it is (tar+gzip, tar+zstd); anything else is taken for a plain tar."""
    kind = sniff(head)
    return Compression(kind).media_type if kind in (GZIP, ZSTD) else mediatypes.LAYER_TAR


# -- writing ---------------------------------------------------------------------------------


class Compressor:
    """Feeds tar bytes to the sink, compressed; never closes the sink.

    The same tar gives the same blob: zstd at level 3, gzip through zlib with no time and no file
    name in its header (gzip.GzipFile would write both).
    """

    def __init__(self, sink: BinaryIO, compression: Compression) -> None:
        self._sink = sink
        self._zstd = None
        self._zlib = None
        if compression is Compression.ZSTD:
            cctx = zstandard.ZstdCompressor(level=3, threads=-1)
            self._zstd = cctx.stream_writer(sink, closefd=False, write_size=CHUNK)
        elif compression is Compression.GZIP:
            # wbits=31: zlib writes the gzip header itself, with mtime 0 and no file name.
            self._zlib = zlib.compressobj(6, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        """Compress and forward one piece of tar."""
        if self._zstd is not None:
            self._zstd.write(data)
        elif self._zlib is not None:
            out = self._zlib.compress(data)
            if out:
                self._sink.write(out)
        else:
            self._sink.write(data)  # chunks are never modified once handed over

    def finish(self) -> None:
        """End the compressed stream (zstd frame / gzip trailer)."""
        if self._zstd is not None:
            self._zstd.flush(zstandard.FLUSH_FRAME)
            self._zstd.close()
        elif self._zlib is not None:
            self._sink.write(self._zlib.flush())


def zstd_chunks(reader: BinaryIO) -> Iterator[bytes]:
    """`reader`'s bytes as a zstd stream (level 3, one thread), in chunks: how `import` stores a
    tarball that is plain or in a compression no layer media type names (xz, bzip2)."""
    return zstandard.ZstdCompressor(level=3).read_to_iter(reader, read_size=CHUNK, write_size=CHUNK)
