"""Overlay upper dir → OCI layer blob, in one streaming pass (tar → sha256 DiffID → compressor → sink).

The tar is written by hand (ustar headers, PAX records only when needed) because CPython's
tarfile costs several times GNU tar on trees of small files; the bytes are deterministic:
per-directory sorted names, no uname/gname, integer (optionally clamped) mtimes.
"""

from __future__ import annotations

import hashlib
import operator
import os
import queue
import stat
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from minibuild.layer import whiteout
from minibuild.layer.compression import CHUNK, Compression, Compressor
from minibuild.layer.xattrs import layer_xattrs
from minibuild.oci.digest import Digest
from minibuild.errors import LayerError

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar and tarfile pad the archive to whole records
_ZEROS = bytes(RECORD)
_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777
_WHITEOUT_MODE = 0o644


@dataclass(frozen=True)
class LayerSummary:
    """What history and wasted-space accounting need to know about a layer's content."""

    files: tuple[tuple[str, int], ...]  # every non-dir entry; regular size, else 0
    whiteouts: tuple[str, ...]  # paths this layer deletes
    opaques: tuple[str, ...]  # dirs whose lower children this layer hides
    content_size: int  # regular file bytes, hardlinked bodies once

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, not tuples)."""
        return {
            "files": [[path, size] for path, size in self.files],
            "whiteouts": list(self.whiteouts),
            "opaques": list(self.opaques),
            "content_size": self.content_size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerSummary:
        """Inverse of to_json."""
        return cls(
            files=tuple((str(p), int(s)) for p, s in d["files"]),
            whiteouts=tuple(d["whiteouts"]),
            opaques=tuple(d["opaques"]),
            content_size=int(d["content_size"]),
        )


@dataclass(frozen=True)
class LayerWrite:
    """The result of writing one layer: its DiffID and what the image config/history needs."""

    diff_id: Digest
    media_type: str
    tar_size: int
    summary: LayerSummary
    empty: bool


def is_empty(upper: Path) -> bool:
    """True when the upper dir holds no entry at all (the step changed nothing)."""
    with os.scandir(upper) as it:
        return next(it, None) is None


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


class _TarOut:
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
        self._buf += _ZEROS[:trailer + (-total % RECORD)]
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


# ---------------------------------------------------------------- tar headers


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


def _header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, kind: bytes,
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


# ---------------------------------------------------------------- the walk


class _Summary:
    """Collects the LayerSummary while entries stream by."""

    def __init__(self) -> None:
        # bytes paths while streaming; decoded once at the end
        self.files: list[tuple[bytes, int]] = []
        self.whiteouts: list[bytes] = []
        self.opaques: list[bytes] = []
        self.content_size = 0

    def build(self) -> LayerSummary:
        """The frozen summary."""
        return LayerSummary(
            files=tuple((_text(p), size) for p, size in self.files),
            whiteouts=tuple(map(_text, self.whiteouts)),
            opaques=tuple(map(_text, self.opaques)),
            content_size=self.content_size,
        )


# Regular files are opened relative to their directory's descriptor and then examined through the
# open fd (fstat, flistxattr, read): path-based lstat/listxattr would each walk the whole path again,
# which costs about as much as the Python work per small file.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_DIRS = 32  # directory fds kept open along the walk's stack; deeper ancestors are reopened
_SMALL = CHUNK // 4  # files up to this size are read in one go into the output buffer
_WHITEOUT_PREFIX = whiteout.WHITEOUT_PREFIX.encode()


_name = operator.attrgetter("name")  # the sort key of DirEntry children (C-level: no Python call)


class _Dir:
    """A directory being walked: its children still to write, and a descriptor to open them by.

    Children are DirEntry objects (bytes names, d_type cached) in reverse bytes order, popped from
    the end. The descriptor is opened on first use and may be released and reopened later, so a
    deep tree never holds more than _OPEN_DIRS of them.
    """

    __slots__ = ("path", "rel", "children", "fd")

    def __init__(self, path: bytes, rel: bytes) -> None:
        self.path = path
        self.rel = rel  # tar name prefix of the children: b"" or b"a/b/"
        with os.scandir(path) as it:
            self.children = sorted(it, key=_name, reverse=True)
        self.fd = -1

    def dir_fd(self) -> int:
        """A descriptor on this directory (opened now if needed)."""
        if self.fd < 0:
            self.fd = os.open(self.path, _OPEN_DIR)
        return self.fd

    def release(self) -> None:
        """Close the descriptor, if open."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class _Walker:
    """Walks one upper dir depth-first in bytes order and writes each entry to the tar."""

    def __init__(self, out: _TarOut, clamp_mtime: int | None) -> None:
        self.out = out
        self.clamp = clamp_mtime
        self.summary = _Summary()
        self.links: dict[tuple[int, int], bytes] = {}  # (st_dev, st_ino) -> first tar name
        self.entries = 0

    def _mtime(self, st: os.stat_result) -> int:
        mtime = st[stat.ST_MTIME]  # whole seconds, rounded down like st_mtime_ns // 10**9
        if self.clamp is not None and mtime > self.clamp:
            return self.clamp
        return mtime

    def walk(self, root: bytes) -> None:
        """Write every entry under root (not root itself), parents before children."""
        stack = [_Dir(root, b"")]
        try:
            while stack:
                top = stack[-1]
                if not top.children:
                    stack.pop().release()
                    continue
                entry = top.children.pop()
                # d_type says "regular file" for most entries: take the descriptor-based path.
                if entry.is_file(follow_symlinks=False) and self._file(top, entry):
                    continue
                rel = top.rel + entry.name
                if self._entry(entry.path, rel, entry.name):
                    if len(stack) >= _OPEN_DIRS:
                        stack[-_OPEN_DIRS].release()
                    stack.append(_Dir(entry.path, rel + b"/"))
        finally:
            for d in stack:
                d.release()

    def _file(self, top: _Dir, entry: os.DirEntry) -> bool:
        """Write a regular file examined through one open descriptor.

        False (nothing written) when it cannot be opened or is no longer a regular file: the
        path-based _entry then handles it exactly as it handles every other kind of entry.
        """
        try:
            fd = os.open(entry.name, _OPEN_FILE, dir_fd=top.dir_fd())
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            self.entries += 1
            name = entry.name
            rel = top.rel + name
            xattrs = layer_xattrs(fd)
            kept: dict[str, bytes] | None = xattrs
            if xattrs or name.startswith(_WHITEOUT_PREFIX):  # else no whiteout rule can apply
                kept = self._checked(rel, name, st, xattrs)
            if kept is not None:
                self._regular(entry.path, rel, st, kept, fd)
        finally:
            os.close(fd)
        return True

    def _entry(self, path: bytes, rel: bytes, name: bytes) -> bool:
        """Write one entry by path; True when it is a directory whose children must follow."""
        self.entries += 1
        st = os.lstat(path)
        xattrs = layer_xattrs(path)
        kept = self._checked(rel, name, st, xattrs)
        if kept is None:
            return False
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._directory(rel, st, kept, whiteout.is_overlay_opaque(st, xattrs))
            return True
        if stat.S_ISREG(mode):
            self._regular(path, rel, st, kept)
        elif stat.S_ISLNK(mode):
            self._simple(rel, st, b"2", kept, link=os.readlink(path))
        elif stat.S_ISFIFO(mode):
            self._simple(rel, st, b"6", kept)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = b"3" if stat.S_ISCHR(mode) else b"4"
            self._simple(rel, st, kind, kept, os.major(st.st_rdev), os.minor(st.st_rdev))
        # sockets: a tar cannot hold them (GNU tar skips them too)
        return False

    def _checked(self, rel: bytes, name: bytes, st: os.stat_result,
                 xattrs: dict[str, bytes]) -> dict[str, bytes] | None:
        """Apply the whiteout rules: None when the entry was written as a whiteout, else the
        xattrs the layer keeps. Raises LayerError for what a layer cannot express."""
        if (xattrs or not stat.S_ISREG(st.st_mode)) and whiteout.is_overlay_whiteout(st, xattrs):
            self._whiteout(rel, st)
            return None
        if name.startswith(_WHITEOUT_PREFIX):
            whiteout.refuse_real_whiteout_name(rel)
        if not xattrs:  # the common case: skip the per-entry rule calls
            return xattrs
        whiteout.unrepresentable(_text(rel), xattrs)
        return {k: v for k, v in xattrs.items() if whiteout.keep_xattr(k)}

    def _head(self, name: bytes, st: os.stat_result, size: int, kind: bytes,
              kept: dict[str, bytes], link: bytes = b"", major: int = 0, minor: int = 0) -> None:
        self.out.add(_header(name, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size,
                             self._mtime(st), kind, link, major, minor, kept))

    def _whiteout(self, rel: bytes, st: os.stat_result) -> None:
        parent, _, name = rel.rpartition(b"/")
        wh = whiteout.whiteout_name(os.fsdecode(name)).encode("utf-8", "surrogateescape")
        tar_name = parent + b"/" + wh if parent else wh
        self.out.add(_header(tar_name, _WHITEOUT_MODE, 0, 0, 0, self._mtime(st), b"0"))
        self.summary.whiteouts.append(rel)

    def _directory(self, rel: bytes, st: os.stat_result, kept: dict[str, bytes],
                   opaque: bool) -> None:
        self._head(rel + b"/", st, 0, b"5", kept)
        if opaque:
            marker = rel + b"/" + whiteout.OPAQUE_MARKER.encode()
            self.out.add(_header(marker, _WHITEOUT_MODE, 0, 0, 0, self._mtime(st), b"0"))
            self.summary.opaques.append(rel)

    def _simple(self, rel: bytes, st: os.stat_result, kind: bytes, kept: dict[str, bytes],
                major: int = 0, minor: int = 0, *, link: bytes = b"") -> None:
        if self._hardlink(rel, st, 0, kept):
            return
        self._head(rel, st, 0, kind, kept, link, major, minor)
        self.summary.files.append((rel, 0))

    def _hardlink(self, rel: bytes, st: os.stat_result, size: int, kept: dict[str, bytes]) -> bool:
        """Write a link entry when this inode was already stored under another name."""
        if st.st_nlink < 2:
            return False
        key = (st.st_dev, st.st_ino)
        first = self.links.get(key)
        if first is None:
            self.links[key] = rel
            return False
        self._head(rel, st, 0, b"1", kept, first)
        self.summary.files.append((rel, size))
        return True

    def _regular(self, path: bytes, rel: bytes, st: os.stat_result, kept: dict[str, bytes],
                 fd: int = -1) -> None:
        """Header and body of a regular file; `fd` when it is open already (else opened here).

        This runs once per file and small files dominate trees: keep the calls few.
        """
        size = st.st_size
        if st.st_nlink > 1 and self._hardlink(rel, st, size, kept):
            return
        head = _header(rel, st.st_mode & 0o7777, st.st_uid, st.st_gid, size, self._mtime(st),
                       b"0", xattrs=kept)
        own = fd < 0
        if own:
            fd = os.open(path, _OPEN_FILE)
        try:
            if size <= _SMALL:  # header, body and padding as one piece of the output buffer
                self.out.add(b"".join((head, _read_small(fd, path, size), _ZEROS[: -size % BLOCK])))
            else:
                self.out.add(head)
                self._large_body(fd, path, size)
        finally:
            if own:
                os.close(fd)
        self.summary.files.append((rel, size))
        self.summary.content_size += size

    def _large_body(self, fd: int, path: bytes, size: int) -> None:
        left = size
        while left:
            data = os.read(fd, min(left, CHUNK))  # a fresh buffer: the pipeline keeps it a while
            if not data:
                raise _changed(path)
            self.out.stream(data)
            left -= len(data)
        self.out.add(_ZEROS[: -size % BLOCK])


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


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _changed(path: bytes) -> LayerError:
    return LayerError(f"{os.fsdecode(path)!r} shrank while it was being snapshotted")


def write_layer(upper: Path, sink: BinaryIO, *, compression: Compression = Compression.ZSTD,
                clamp_mtime: int | None = None) -> LayerWrite:
    """Stream the upper dir as a layer tar into `sink` (compressed); return its DiffID and summary.

    `sink` only needs write(bytes); it hashes what it receives for the blob Digest and stays open.
    """
    out = _TarOut(Compressor(sink, compression))
    walker = _Walker(out, clamp_mtime)
    try:
        walker.walk(os.fsencode(upper))
        diff_id = out.close()
    except BaseException:
        out.abort()
        raise
    return LayerWrite(diff_id=diff_id, media_type=compression.media_type, tar_size=out.size,
                      summary=walker.summary.build(), empty=walker.entries == 0)
