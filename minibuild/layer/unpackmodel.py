"""What unpacking a layer blob gives, as a tree in memory: `fsck --deep`'s model of a layer dir.

Built by the rules of unpack's extractor from the members `members.walk_layer` yields: a later
entry over a path, `.wh.x` before or after `x/`, implicit parents, hard links sharing one inode.
File bodies are hashed as they stream by; no file is held in memory.
"""

from __future__ import annotations

import hashlib
import math
import stat
import tarfile

from minibuild.errors import LayerError
from minibuild.layer import members
from minibuild.layer.compression import CHUNK
from minibuild.layer.whiteout import TarWhiteout, WhiteoutKind

Parts = tuple[str, ...]


class Whiteout:
    """A 0:0 char device unpack makes for `.wh.x` (one shared instance: it has no attributes)."""


WHITEOUT = Whiteout()


class Dir:
    """A directory of the model; attributes only when a tar entry named it (else implicit)."""

    __slots__ = ("children", "opaque", "explicit", "mode", "uid", "gid", "xattrs")

    def __init__(self, opaque: bool = False) -> None:
        self.children: dict[str, Dir | Inode | Whiteout] = {}
        self.opaque = opaque
        self.explicit = False
        self.mode = self.uid = self.gid = 0
        self.xattrs: dict[str, bytes] = {}


class Inode:
    """A non-directory inode of the model; several names share one for a tar hard link."""

    __slots__ = ("kind", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "rdev",
                 "xattrs", "names")

    def __init__(self, kind: int, member: tarfile.TarInfo) -> None:
        self.kind = kind
        self.mode = member.mode & 0o7777  # old tars put the type bits in the mode field too
        self.uid, self.gid = member.uid, member.gid
        self.mtime = math.floor(member.mtime)  # a PAX mtime may have a fraction
        self.size = 0
        self.sha256 = b""
        self.target = b""
        self.rdev = (0, 0)
        self.xattrs: dict[str, bytes] | None = None  # None: unpack sets none for this kind
        self.names = 1


Node = Dir | Inode | Whiteout  # what a name of the model stands for


class Model:
    """Applies tar members the way unpack's _Extractor does, to a tree in memory."""

    def __init__(self, privileged: bool) -> None:
        self.root = Dir()
        self.privileged = privileged
        self.entries = 0
        self.content_bytes = 0
        self.max_mtime = -math.inf  # the tar's newest mtime: what a clamp turns newer ones into
        self._last: tuple[Parts, Dir] | None = None  # members come grouped by dir

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts,
              wo: TarWhiteout | None) -> None:
        """Apply one member (walk_layer calls this in archive order)."""
        self.entries += 1
        self.max_mtime = max(self.max_mtime, math.floor(member.mtime))
        parent = self._parent(parts[:-1], member.name)
        name = parts[-1]
        if wo is not None:
            self._whiteout(parent, wo)
        elif member.isdir():
            self._directory(parent, name, member)
        else:
            if isinstance(parent.children.pop(name, None), Dir):
                self._last = None  # a cached parent may have been below it
            parent.children[name] = self._non_dir(tf, member)

    def _parent(self, parts: Parts, name: str) -> Dir:
        last = self._last
        if last is not None and last[0] == parts:
            return last[1]
        if last is not None and len(parts) == len(last[0]) + 1 and parts[:-1] == last[0]:
            found = self._child_dir(last[1], parts, len(parts) - 1, name, True)  # one level down
        else:
            found = self._dir_at(parts, name, create=True)
        self._last = (parts, found)
        return found

    def _dir_at(self, parts: Parts, name: str, create: bool) -> Dir:
        """The dir at `parts`, as unpack's _real_dir finds or makes it."""
        node = self.root
        for i in range(len(parts)):
            node = self._child_dir(node, parts, i, name, create)
        return node

    def _child_dir(self, node: Dir, parts: Parts, i: int, name: str, create: bool) -> Dir:
        """The dir parts[i] inside `node` (the dir at parts[:i])."""
        child = node.children.get(parts[i])
        if child is None:
            if not create:
                raise LayerError(f"layer entry {name!r}: {'/'.join(parts[:i + 1])!r} does not exist")
            child = node.children[parts[i]] = Dir()
        elif child is WHITEOUT and create:
            child = node.children[parts[i]] = Dir(opaque=True)  # `.wh.x` then `x/...`: recreated
        elif not isinstance(child, Dir):
            raise LayerError(f"layer entry {name!r}: {'/'.join(parts[:i + 1])!r} is not a directory")
        return child

    def _whiteout(self, parent: Dir, wo: TarWhiteout) -> None:
        if wo.kind is WhiteoutKind.OPAQUE:
            parent.opaque = True
            return
        existing = parent.children.get(wo.hidden)
        if existing is None:
            parent.children[wo.hidden] = WHITEOUT
        elif isinstance(existing, Dir):
            existing.opaque = True  # x came first in this layer: x replaces the lower x entirely

    def _directory(self, parent: Dir, name: str, member: tarfile.TarInfo) -> None:
        existing = parent.children.get(name)
        if existing is WHITEOUT:
            node = Dir(opaque=True)
        elif isinstance(existing, Dir):
            node = existing  # dir over dir: children stay, the new attributes win
        else:
            node = Dir()
        parent.children[name] = node
        node.explicit = True
        node.mode, node.uid, node.gid = member.mode & 0o7777, member.uid, member.gid
        node.xattrs.update(members.kept_xattrs(member))  # setxattr adds to what an earlier entry set

    def _non_dir(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> Inode:
        if member.isreg():
            inode = Inode(stat.S_IFREG, member)
            inode.xattrs = members.kept_xattrs(member)
            inode.size, inode.sha256 = self._hash_body(tf, member)
        elif member.issym():
            inode = Inode(stat.S_IFLNK, member)
            inode.target = member.linkname.encode("utf-8", "surrogateescape")
        elif member.islnk():
            return self._hardlink(member)
        elif member.isfifo():
            inode = Inode(stat.S_IFIFO, member)
        elif member.ischr() or member.isblk():
            if not self.privileged:
                raise LayerError(f"layer entry {member.name!r} is a device node: unpacking needs root")
            if member.ischr() and member.devmajor == 0 and member.devminor == 0:
                raise LayerError(f"layer entry {member.name!r} is a 0:0 device (a raw overlay whiteout)")
            inode = Inode(stat.S_IFCHR if member.ischr() else stat.S_IFBLK, member)
            inode.rdev = (member.devmajor, member.devminor)
        else:
            raise LayerError(f"layer entry {member.name!r} has unsupported tar type {member.type!r}")
        return inode

    def _hash_body(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[int, bytes]:
        """Size and sha256 of a member's body, read in chunks as it streams by."""
        h, size = hashlib.sha256(), 0
        source = tf.extractfile(member)
        while size < member.size:  # one read for a small file, none for an empty one
            chunk = source.read(min(CHUNK, member.size - size))
            if not chunk:
                break  # a truncated tar: walk_layer's reader raises for it
            h.update(chunk)
            size += len(chunk)
        self.content_bytes += size
        return size, h.digest()

    def _hardlink(self, member: tarfile.TarInfo) -> Inode:
        source = members.safe_parts(member.linkname, f"hardlink {member.name!r}: target")
        if not source:
            raise LayerError(f"layer hardlink {member.name!r} points at the layer root")
        target = self._dir_at(source[:-1], member.name, create=False).children.get(source[-1])
        if target is None:
            raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: no such entry")
        if not isinstance(target, Inode):
            raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: not a file")
        target.names += 1  # a link shares its inode's attributes: its own header fields are unused
        return target
