"""An unpacked layer dir checked against its blob, every byte: what `fsck --deep` runs per layer.

The blob is streamed once through unpack's own walker (`members.walk_layer`: the same name checks,
aufs skipping and whiteout decoding) into a model of what unpacking it gives (unpackmodel.py:
built by the rules of unpack's extractor; file bodies hashed as they stream by). Then the dir is walked once and each entry compared with the model; what only one side has is
an extra or a missing entry.

Compared: type (whiteouts as overlay sees them: char 0:0 or the xattr form), mode bits, owner
(when running as root, as unpack sets it only then), size, content, symlink target, device
numbers, the xattrs unpack sets, `trusted.overlay.opaque` (as root: only root can read it), and
which names share an inode (a hard link of the tar is one inode here, two files are two inodes).

Not compared, so a healthy store never raises a false alarm:
- Directory mtimes: a dir's mtime moves whenever an entry is added or removed, and those changes
  show up as extra or missing entries anyway.
- A non-dir's mtime only one way. A layer the build made is its upper dir adopted as is, while
  its tar clamps mtimes newer than SOURCE_DATE_EPOCH down to it; a clamped entry's tar mtime is
  then the highest in the tar. So a file newer than the tar says is accepted only when the tar's
  mtime is that highest value; any other difference (older, or newer than an unclamped time) is
  damage. A `touch` on the layer's newest file is missed; a clamp is never reported.
- The layer root's attributes (unpack skips `./`; overlay takes the root from the upper dir),
  dirs unpack creates implicitly (made 0755 by the unpacking process), whiteout modes and owners,
  and sockets in the dir (an upper dir may hold one; the snapshot drops them, as a tar cannot
  hold one).
- `security.selinux` on the dir side when the tar has none: the kernel labels new files itself.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from minibuild.fs import dirstack
from minibuild.layer import members, unpack, whiteout
from minibuild.layer.compression import CHUNK
from minibuild.layer.unpackmodel import WHITEOUT, Dir, Inode, Model, Node
from minibuild.layer.xattrs import layer_xattrs, opaque_xattr
from minibuild.oci.digest import Digest

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_SELINUX = "security.selinux"
_KINDS = {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
          stat.S_IFIFO: "fifo", stat.S_IFCHR: "char device", stat.S_IFBLK: "block device",
          stat.S_IFSOCK: "socket"}


@dataclass(frozen=True)
class Difference:
    """One path of a layer dir that is not what unpacking its blob gives, and how."""

    path: str  # relative to the layer dir
    what: str
    outside_links: int = 0  # more names of this inode outside the layer dir (COPY reuse)

    def line(self) -> str:
        """`PATH: WHAT`, with a note when the inode is shared with other dirs."""
        text = f"{self.path}: {self.what}"
        if self.outside_links:
            text += (f" (this inode has {self.outside_links} more link(s) outside this layer dir, "
                     "e.g. a layer a COPY rebuild linked it into: removing this dir does not "
                     "repair them; each such layer dir is checked and reported on its own)")
        return text


@dataclass(frozen=True)
class Comparison:
    """The outcome for one layer dir."""

    diff_id: Digest  # what the blob's tar hashes to
    differences: tuple[Difference, ...]  # the first `limit`, in walk order (sorted paths)
    count: int  # differing paths in all
    entries: int  # tar entries read
    content_bytes: int  # regular-file bytes of the blob hashed (and as many read in the dir)

    @property
    def ok(self) -> bool:
        """True when the dir is what unpacking the blob gives."""
        return self.count == 0


def compare_layer(blob: BinaryIO, media_type: str, directory: Path, *, limit: int = 5) -> Comparison:
    """Stream a layer blob and compare what unpacking it gives with the unpacked `directory`.

    LayerError when the blob is not a layer unpack would accept (then no dir could come from it).
    """
    privileged = os.geteuid() == 0
    model = Model(privileged)
    diff_id, _ = members.walk_layer(blob, media_type, model.apply)
    checker = _Checker(model, privileged, limit)
    checker.compare_root(os.fsencode(directory))
    return Comparison(diff_id, checker.result(), checker.count, model.entries, model.content_bytes)


# -- the walk of the dir -----------------------------------------------------------------------


class _Checker:
    """Walks a layer dir in sorted order and compares each entry with the model."""

    def __init__(self, model: Model, privileged: bool, limit: int) -> None:
        self.model = model
        self.privileged = privileged
        self.limit = limit
        self.count = 0
        self._kept: list[tuple[str, str, tuple[int, int] | None, int]] = []
        self._placed: dict[int, tuple[tuple[int, int], str]] = {}  # id(model inode) -> dir inode
        self._owners: dict[tuple[int, int], tuple[Inode, str]] = {}  # dir inode -> model inode
        self._names_here: Counter[tuple[int, int]] = Counter()  # names per multi-link inode

    def differ(self, path: str, what: str, st: os.stat_result | None = None) -> None:
        """Record one difference (only the first `limit` are kept)."""
        self.count += 1
        if len(self._kept) < self.limit:
            shared = st is not None and st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode)
            key = (st.st_dev, st.st_ino) if shared else None
            self._kept.append((path, what, key, st.st_nlink if shared else 0))

    def result(self) -> tuple[Difference, ...]:
        """The kept differences, each with the links its inode has outside the dir."""
        return tuple(Difference(path, what, max(0, nlink - self._names_here[key]) if key else 0)
                     for path, what, key, nlink in self._kept)

    def compare_root(self, root: bytes) -> None:
        """The layer root (only its opaque mark), then everything below it, by dir fd and with
        an explicit stack (dirstack): any depth, no path longer than /proc/self/fd/N/NAME."""
        if self.privileged:
            self._opaque("/", layer_xattrs(root), self.model.root)
        with dirstack.DirStack.open(root) as fds:
            frames = [self._frame(fds.fd, "", self.model.root)]
            while frames:
                names, rel, model = frames[-1]
                if not names:
                    frames.pop()
                    if frames:
                        fds.pop()
                    continue
                name, present = names.pop()
                expected = model.children.get(name)
                if not present:
                    self.differ(rel + name, f"missing (the blob has {_describe(expected)})")
                elif self._entry(fds.fd, name, rel + name, expected):
                    fds.push(os.fsencode(name))
                    frames.append(self._frame(fds.fd, rel + name + "/", expected))

    @staticmethod
    def _frame(fd: int, rel: str, model: Dir) -> tuple[list[tuple[str, bool]], str, Dir]:
        """A dir to compare: (name, found here) for the names either side has, last first."""
        found = set(os.listdir(fd))
        names = sorted(found | model.children.keys(), reverse=True)
        return [(name, name in found) for name in names], rel, model

    def _entry(self, dir_fd: int, name: str, path: str, expected: Node | None) -> bool:
        """Compare one entry; True when it is a dir whose children are compared next."""
        where = dirstack.at(dir_fd, os.fsencode(name))
        st = os.lstat(where)
        xattrs = layer_xattrs(where)
        fmt = stat.S_IFMT(st.st_mode)
        if st.st_nlink > 1 and fmt != stat.S_IFDIR:
            self._names_here[(st.st_dev, st.st_ino)] += 1
        is_whiteout = whiteout.is_overlay_whiteout(st, xattrs)
        here = "a whiteout" if is_whiteout else _a(_KINDS.get(fmt, "special file"))
        if expected is None:
            if fmt != stat.S_IFSOCK:  # snapshot drops sockets: an adopted upper dir may hold one
                self.differ(path, f"not in the blob ({here} here)", st)
        elif expected is WHITEOUT:
            if not is_whiteout:
                self.differ(path, f"a whiteout in the blob, {here} here", st)
        elif isinstance(expected, Dir):
            if fmt != stat.S_IFDIR:
                self.differ(path, f"a directory in the blob, {here} here", st)
                return False
            self._directory(path, st, xattrs, expected)
            return True
        elif is_whiteout or fmt != expected.kind:
            self.differ(path, f"{_describe(expected)} in the blob, {here} here", st)
        else:
            self._inode(where, path, st, xattrs, expected)
        return False

    def _directory(self, path: str, st: os.stat_result, xattrs: dict[str, bytes], model: Dir) -> None:
        problems = []
        if model.explicit:
            problems += self._mode_owner(st, model.mode, model.uid, model.gid)
            problems += _xattr_problems(xattrs, model.xattrs)
        if problems:
            self.differ(path, "; ".join(problems), st)
        if self.privileged:
            self._opaque(path, xattrs, model)

    def _opaque(self, path: str, xattrs: dict[str, bytes], model: Dir) -> None:
        name = opaque_xattr()
        opaque = xattrs.get(name) == b"y"
        if opaque and not model.opaque:
            self.differ(path, f"opaque here ({name}), not in the blob: "
                              "it hides what lower layers have in it")
        elif model.opaque and not opaque:
            self.differ(path, f"opaque in the blob, not here ({name} lost): "
                              "lower layers' entries show through")

    def _inode(self, entry: bytes, path: str, st: os.stat_result, xattrs: dict[str, bytes],
               model: Inode) -> None:
        """A non-dir of the right type: one inode per model inode, then its attributes once."""
        key = (st.st_dev, st.st_ino)
        if model.names > 1:
            placed = self._placed.get(id(model))
            if placed is not None:
                if placed[0] != key:
                    self.differ(path, f"hard link to {placed[1]} broken: a separate inode here", st)
                return  # the inode's attributes were compared under its first name
            self._placed[id(model)] = (key, path)
        if st.st_nlink > 1:
            owner = self._owners.setdefault(key, (model, path))
            if owner[0] is not model:
                self.differ(path, f"shares its inode with {owner[1]}; the blob has two separate "
                                  "files (a write to one shows in the other)", st)
                return
        problems = self._mode_owner(st, None if model.kind == stat.S_IFLNK else model.mode,
                                    model.uid, model.gid)
        problems += self._body(entry, st, model)
        problems += self._mtime(st, model)
        if model.xattrs is not None:
            problems += _xattr_problems(xattrs, model.xattrs)
        if problems:
            self.differ(path, "; ".join(problems), st)

    def _mode_owner(self, st: os.stat_result, mode: int | None, uid: int, gid: int) -> list[str]:
        problems = []
        if mode is not None and stat.S_IMODE(st.st_mode) != mode:
            problems.append(f"mode {stat.S_IMODE(st.st_mode):04o}, the blob says {mode:04o}")
        if self.privileged and (st.st_uid, st.st_gid) != (uid, gid):
            problems.append(f"owner {st.st_uid}:{st.st_gid}, the blob says {uid}:{gid}")
        return problems

    def _body(self, entry: bytes, st: os.stat_result, model: Inode) -> list[str]:
        """Size and content, symlink target or device numbers: what the inode holds."""
        if model.kind == stat.S_IFREG:
            if st.st_size != model.size:
                return [f"size {st.st_size}, the blob says {model.size}"]
            if _sha256(entry, st.st_size) != model.sha256:
                return ["content differs (same size)"]
        elif model.kind == stat.S_IFLNK:
            target = os.readlink(entry)
            if target != model.target:
                return [f"symlink to {os.fsdecode(target)!r}, the blob says "
                        f"{os.fsdecode(model.target)!r}"]
        elif model.kind in (stat.S_IFCHR, stat.S_IFBLK):
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if rdev != model.rdev:
                return [f"device {rdev[0]}:{rdev[1]}, the blob says {model.rdev[0]}:{model.rdev[1]}"]
        return []

    def _mtime(self, st: os.stat_result, model: Inode) -> list[str]:
        mtime = st.st_mtime_ns // 1_000_000_000
        if mtime == model.mtime or (mtime > model.mtime and model.mtime == self.model.max_mtime):
            return []  # equal, or newer where a SOURCE_DATE_EPOCH clamp would give this tar mtime
        return [f"mtime {mtime}, the blob says {model.mtime}"]


def _xattr_problems(actual: dict[str, bytes], expected: dict[str, bytes]) -> list[str]:
    """The kept xattrs that differ, by name (values may be binary: not printed)."""
    kept = {k: v for k, v in actual.items() if whiteout.keep_xattr(k)}
    if _SELINUX not in expected:
        kept.pop(_SELINUX, None)
    if kept == expected:
        return []
    names = sorted(k for k in kept.keys() | expected.keys() if kept.get(k) != expected.get(k))
    return [f"xattrs differ ({', '.join(names)})"]


def _sha256(path: bytes, size: int) -> bytes:
    """sha256 of a file's first `size` bytes (its size when it was stat'ed), read in chunks."""
    h = hashlib.sha256()
    if not size:
        return h.digest()
    fd = os.open(path, _OPEN_FILE)
    try:
        while size > 0:  # one read for a small file
            chunk = os.read(fd, min(CHUNK, size))
            if not chunk:
                break  # shrank since its stat: the digest differs, which is the truth
            h.update(chunk)
            size -= len(chunk)
    finally:
        os.close(fd)
    return h.digest()


def _describe(node: Node | None) -> str:
    if node is WHITEOUT:
        return "a whiteout"
    if isinstance(node, Dir):
        return "a directory" if not node.children else f"a directory of {_count(node)} entries"
    if isinstance(node, Inode):
        return _a(_KINDS[node.kind])
    return "nothing"


def _count(node: Dir) -> int:
    """Entries below a model dir, at any depth (iterative)."""
    total, pending = 0, [node]
    while pending:
        children = pending.pop().children.values()
        total += len(children)
        pending.extend(c for c in children if isinstance(c, Dir))
    return total


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"
