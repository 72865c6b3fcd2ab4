"""Overlay upper dir → OCI layer blob, in one streaming pass (tar → sha256 DiffID → compressor → sink).

The walk decides what goes into the layer (whiteouts, opaque dirs, hard links, kept xattrs);
tar.py packs the entries. The bytes are deterministic: per-directory sorted names, no
uname/gname, integer (optionally clamped) mtimes.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from minibuild.fs import dirstack
from minibuild.layer import whiteout
from minibuild.layer.compression import Compression, Compressor
from minibuild.layer.tar import TarOut, header
from minibuild.layer.xattrs import layer_xattrs
from minibuild.oci.digest import Digest

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


# Every entry is reached relative to its directory's descriptor (dirstack), never by a path from
# the upper dir: a tree 10,000 levels deep is far past PATH_MAX, and a running container (commit
# --no-pause) may swap a dir for a symlink to a host dir mid-walk, which no open here follows.
# Regular files are opened relative to that descriptor and then examined through the open fd
# (fstat, flistxattr, read); other entries through /proc/self/fd/N/NAME (lstat, llistxattr,
# readlink: the last component is never followed, and N pins the directory).
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT_PREFIX = whiteout.WHITEOUT_PREFIX.encode()
_GONE = dirstack.GONE + (errno.EINVAL,)  # vanished or changed kind under a running container


_name = operator.attrgetter("name")  # the sort key of DirEntry children (C-level: no Python call)


class _Dir:
    """A directory being walked: its children still to write, in reverse bytes order (DirEntry
    objects: bytes names, d_type cached), popped from the end."""

    __slots__ = ("rel", "children")

    def __init__(self, fd: int, rel: bytes) -> None:
        self.rel = rel  # tar name prefix of the children: b"" or b"a/b/"
        with os.scandir(b"/proc/self/fd/%d" % fd) as it:
            self.children = sorted(it, key=_name, reverse=True)


class _Walker:
    """Walks one upper dir depth-first in bytes order and writes each entry to the tar."""

    def __init__(self, out: TarOut, clamp_mtime: int | None) -> None:
        self.out = out
        self.clamp = clamp_mtime
        self.summary = _Summary()
        self.links: dict[tuple[int, int], bytes] = {}  # (st_dev, st_ino) -> first tar name
        self.entries = 0
        self.skipped = 0  # entries that vanished or changed kind while walked

    def _mtime(self, st: os.stat_result) -> int:
        mtime = st[stat.ST_MTIME]  # whole seconds, rounded down like st_mtime_ns // 10**9
        if self.clamp is not None and mtime > self.clamp:
            return self.clamp
        return mtime

    def walk(self, root: bytes) -> None:
        """Write every entry under root (not root itself), parents before children."""
        with dirstack.DirStack.open(root) as fds:
            stack = [_Dir(fds.fd, b"")]
            while stack:
                top = stack[-1]
                if not top.children:
                    stack.pop()
                    if stack:
                        fds.pop()
                    continue
                entry = top.children.pop()
                # d_type says "regular file" for most entries: take the descriptor-based path.
                if entry.is_file(follow_symlinks=False) and self._file(fds.fd, top, entry):
                    continue
                rel = top.rel + entry.name
                st = self._entry(fds.fd, entry.name, rel)
                if st is not None and self._enter(fds, entry.name, st):
                    stack.append(_Dir(fds.fd, rel + b"/"))

    def _enter(self, fds: dirstack.DirStack, name: bytes, st: os.stat_result) -> bool:
        """Open the dir just written by fd; False (children skipped) when it is gone or is no
        longer the dir whose header was written (swapped under a running container)."""
        try:
            now = fds.push(name)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self.skipped += 1
            return False
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            fds.pop()
            self.skipped += 1
            return False
        return True

    def _file(self, dir_fd: int, top: _Dir, entry: os.DirEntry) -> bool:
        """Write a regular file examined through one open descriptor.

        False (nothing written) when it cannot be opened or is no longer a regular file: the
        path-based _entry then handles it exactly as it handles every other kind of entry.
        """
        try:
            fd = os.open(entry.name, _OPEN_FILE, dir_fd=dir_fd)
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

    def _entry(self, dir_fd: int, name: bytes, rel: bytes) -> os.stat_result | None:
        """Write one entry of the dir `dir_fd`; its lstat when it is a directory whose children
        must follow. One that vanishes or changes kind meanwhile is skipped."""
        path = dirstack.at(dir_fd, name)
        try:
            st = os.lstat(path)
            xattrs = layer_xattrs(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else b""
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self.skipped += 1
            return None
        self.entries += 1
        kept = self._checked(rel, name, st, xattrs)
        if kept is None:
            return None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._directory(rel, st, kept, whiteout.is_overlay_opaque(st, xattrs))
            return st
        if stat.S_ISREG(mode):
            try:
                self._regular(path, rel, st, kept)
            except OSError as exc:  # swapped for a link or a dir since the lstat: nothing written
                if exc.errno not in _GONE + (errno.EISDIR,):
                    raise
                self.skipped += 1
        elif stat.S_ISLNK(mode):
            self._simple(rel, st, b"2", kept, link=link)
        elif stat.S_ISFIFO(mode):
            self._simple(rel, st, b"6", kept)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = b"3" if stat.S_ISCHR(mode) else b"4"
            self._simple(rel, st, kind, kept, os.major(st.st_rdev), os.minor(st.st_rdev))
        # sockets: a tar cannot hold them (GNU tar skips them too)
        return None

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
        self.out.add(header(name, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size,
                            self._mtime(st), kind, link, major, minor, kept))

    def _whiteout(self, rel: bytes, st: os.stat_result) -> None:
        parent, _, name = rel.rpartition(b"/")
        wh = whiteout.whiteout_name(os.fsdecode(name)).encode("utf-8", "surrogateescape")
        tar_name = parent + b"/" + wh if parent else wh
        self.out.add(header(tar_name, _WHITEOUT_MODE, 0, 0, 0, self._mtime(st), b"0"))
        self.summary.whiteouts.append(rel)

    def _directory(self, rel: bytes, st: os.stat_result, kept: dict[str, bytes],
                   opaque: bool) -> None:
        self._head(rel + b"/", st, 0, b"5", kept)
        if opaque:
            marker = rel + b"/" + whiteout.OPAQUE_MARKER.encode()
            self.out.add(header(marker, _WHITEOUT_MODE, 0, 0, 0, self._mtime(st), b"0"))
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
        head = header(rel, st.st_mode & 0o7777, st.st_uid, st.st_gid, size, self._mtime(st),
                      b"0", xattrs=kept)
        own = fd < 0
        if own:
            fd = os.open(path, _OPEN_FILE)  # only after the fd fast path failed: rare
        try:
            self.out.add_file(head, fd, rel, size)  # rel: messages name the layer path
        finally:
            if own:
                os.close(fd)
        self.summary.files.append((rel, size))
        self.summary.content_size += size


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def write_layer(upper: Path, sink: BinaryIO, *, compression: Compression = Compression.GZIP,
                clamp_mtime: int | None = None) -> LayerWrite:
    """Stream the upper dir as a layer tar into `sink` (compressed); return its DiffID and summary.

    `sink` only needs write(bytes); it hashes what it receives for the blob Digest and stays open.
    """
    out = TarOut(Compressor(sink, compression, reproducible=clamp_mtime is not None))
    walker = _Walker(out, clamp_mtime)
    try:
        walker.walk(os.fsencode(upper))
        diff_id = out.close()
    except BaseException:
        out.abort()
        raise
    return LayerWrite(diff_id=diff_id, media_type=compression.media_type, tar_size=out.size,
                      summary=walker.summary.build(), empty=walker.entries == 0)
