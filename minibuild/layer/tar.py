"""A layer tar, written by hand: ustar headers (PAX records only when a field does not fit),
regular file entries, and the stream that hashes the DiffID while a compressor takes the bytes.

CPython's tarfile costs several times GNU tar on trees of small files, so the headers are packed
here directly; the bytes depend only on the fields handed in (no uname/gname, integer mtimes).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from typing import Callable

from minibuild.errors import LayerError
from minibuild.layer.compression import CHUNK, Compressor
from minibuild.oci.digest import Digest

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar and tarfile pad the archive to whole records
ZEROS = bytes(RECORD)
_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777
_SMALL = CHUNK // 4  # files up to this size are read in one go into the output buffer


# ---------------------------------------------------------------- the output stream


class _Fanout:
    """Hands every tar chunk, in order, to each consumer in its own thread (bounded queues).

    hashlib and zstandard release the GIL on large buffers, so walking/reading files, hashing the
    DiffID and compressing+writing the blob overlap on several cores; a bounded queue keeps memory
    at a few chunks. Chunks are never modified once handed over.
    """

    DEPTH = 4  # chunks in flight per consumer: enough to smooth bursts, small for memory

    def __init__(self, consumers: tuple[Callable[[bytes], None], ...]) -> None:
        self._consumers = consumers
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def put(self, chunk: bytes, *, last: bool = False) -> None:
        """Queue one chunk for every consumer (a lone final chunk is handled inline: no threads)."""
        if self._errors:
            raise self._errors[0]
        if not self._threads:
            if last:
                for consume in self._consumers:
                    consume(chunk)
                return
            self._start()
        for q in self._queues:
            q.put(chunk)

    def _start(self) -> None:
        for consume in self._consumers:
            q: queue.Queue = queue.Queue(self.DEPTH)
            t = threading.Thread(target=self._drain, args=(q, consume), daemon=True,
                                 name="minibuild-snapshot")
            self._queues.append(q)
            self._threads.append(t)
            t.start()

    def _drain(self, q: queue.Queue, consume: Callable[[bytes], None]) -> None:
        failed = False
        while (chunk := q.get()) is not None:
            if failed:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                consume(chunk)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the producer's thread
                self._errors.append(exc)
                failed = True

    def close(self) -> None:
        """Wait until every consumer has seen every chunk; re-raise the first consumer error."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues, self._threads = [], []
        if self._errors:
            raise self._errors[0]


class TarOut:
    """The uncompressed tar stream: batches small pieces, hashes everything once (the DiffID)."""

    def __init__(self, compressor: Compressor) -> None:
        self._buf = bytearray()
        self._hash = hashlib.sha256()
        self._out = compressor
        self._fanout = _Fanout((self._hash.update, compressor.write))
        self.size = 0

    def add(self, data: bytes) -> None:
        """Append a small piece (headers, small file bodies)."""
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()

    def stream(self, data: bytes) -> None:
        """Pass a large piece straight through (after what is buffered); it must not change later."""
        self.flush()
        self._pass(data)

    def add_file(self, head: bytes, fd: int, path: bytes, size: int) -> None:
        """A regular file's entry: its header, `size` bytes read from `fd` and the padding
        (LayerError when the file has shrunk since its stat)."""
        if size <= _SMALL:  # header, body and padding as one piece of the output buffer
            self.add(b"".join((head, _read_small(fd, path, size), ZEROS[: -size % BLOCK])))
            return
        self.add(head)
        left = size
        while left:
            data = os.read(fd, min(left, CHUNK))  # a fresh buffer: the pipeline keeps it a while
            if not data:
                raise _changed(path)
            self.stream(data)
            left -= len(data)
        self.add(ZEROS[: -size % BLOCK])

    def flush(self, *, last: bool = False) -> None:
        """Push buffered bytes downstream."""
        if self._buf:
            buf, self._buf = self._buf, bytearray()  # handed over: never touched again here
            self._pass(buf, last=last)

    def _pass(self, data: bytes | bytearray, *, last: bool = False) -> None:
        self._fanout.put(data, last=last)
        self.size += len(data)

    def close(self) -> Digest:
        """Write the end-of-archive blocks, finish the compressed stream and return the DiffID."""
        trailer = 2 * BLOCK
        total = self.size + len(self._buf) + trailer
        self._buf += ZEROS[:trailer + (-total % RECORD)]
        self.flush(last=True)
        self._fanout.close()
        self._out.finish()
        return Digest.from_hash(self._hash)

    def abort(self) -> None:
        """Stop the consumer threads after a failure (their own errors are superseded)."""
        try:
            self._fanout.close()
        except BaseException:  # noqa: BLE001 - the caller is already raising the first error
            pass



# ---------------------------------------------------------------- headers


def _pax_record(key: bytes, value: bytes) -> bytes:
    payload = b" " + key + b"=" + value + b"\n"
    length = len(payload) + 1
    while length != len(payload) + len(str(length)):
        length = len(payload) + len(str(length))
    return str(length).encode() + payload


_MAGIC = b"ustar\x0000"
_NUL100 = bytes(100)


def _tail(kind: bytes, link: bytes = b"", major: int = 0, minor: int = 0) -> bytes:
    """The header bytes after the checksum field: type, link name, magic, device numbers, padding."""
    devices = b"%07o\0%07o\0" % (major, minor)
    return b"".join((kind, link.ljust(100, b"\0"), _MAGIC, bytes(64), devices, bytes(167)))


# Most entries have no link name and no device numbers: their tail, and its share of the checksum
# (with the checksum field itself counted as 8 spaces), depend on the type alone.
_TAILS = {kind: (tail, 8 * 0x20 + sum(tail))
          for kind in (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"x") for tail in (_tail(kind),)}


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           kind: bytes, link: bytes = b"", major: int = 0, minor: int = 0) -> bytes:
    name = name[:100]
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    if link or major or minor:
        tail = _tail(kind, link[:100], major, minor)
        tail_sum = 8 * 0x20 + sum(tail)
    else:
        tail, tail_sum = _TAILS[kind]
    # The checksum is the sum of all header bytes; the name's zero padding adds nothing. adler32's
    # low half is 1 + that sum modulo 65521, exact here (100 name bytes * 255 + 48 digits < 65521)
    # and several times cheaper than sum() over the bytes, which matters once per entry.
    checksum = tail_sum - 1 + (zlib.adler32(numbers, zlib.adler32(name)) & 0xFFFF)
    return b"".join((name, _NUL100[len(name):], numbers, b"%06o\0 " % checksum, tail))


def header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, kind: bytes,
            link: bytes = b"", major: int = 0, minor: int = 0,
            xattrs: dict[str, bytes] | None = None) -> bytes:
    """A ustar header, preceded by a PAX header only when a field does not fit."""
    if (len(name) <= 100 and len(link) <= 100 and uid <= _MAX_OCTAL_7 and gid <= _MAX_OCTAL_7
            and size <= _MAX_OCTAL_11 and 0 <= mtime <= _MAX_OCTAL_11 and not xattrs):
        return _ustar(name, mode, uid, gid, size, mtime, kind, link, major, minor)  # the usual case
    records: list[bytes] = []
    if len(name) > 100:
        records.append(_pax_record(b"path", name))
    if len(link) > 100:
        records.append(_pax_record(b"linkpath", link))
    if uid > _MAX_OCTAL_7:
        records.append(_pax_record(b"uid", b"%d" % uid))
        uid = 0
    if gid > _MAX_OCTAL_7:
        records.append(_pax_record(b"gid", b"%d" % gid))
        gid = 0
    if size > _MAX_OCTAL_11:
        records.append(_pax_record(b"size", b"%d" % size))
        size = 0
    if not 0 <= mtime <= _MAX_OCTAL_11:
        records.append(_pax_record(b"mtime", b"%d" % mtime))
        mtime = 0
    for key in sorted(xattrs or ()):
        records.append(_pax_record(b"SCHILY.xattr." + key.encode(), xattrs[key]))
    main = _ustar(name, mode, uid, gid, size, mtime, kind, link, major, minor)
    if not _utf8(name) or not _utf8(link):
        records.insert(0, _pax_record(b"hdrcharset", b"BINARY"))
    body = b"".join(records)
    pax = _ustar(b"././@PaxHeader", 0o644, 0, 0, len(body), 0, b"x")
    return b"".join((pax, body, bytes(-len(body) % BLOCK), main))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_small(fd: int, path: bytes, size: int) -> bytes:
    """Exactly `size` bytes of a small file (LayerError when it has shrunk since its stat)."""
    if not size:
        return b""  # empty files are common (__init__.py, markers): skip the read call
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise _changed(path)
        data += more
    return data


def _changed(path: bytes) -> LayerError:
    return LayerError(f"{os.fsdecode(path)!r} shrank while it was being snapshotted")
