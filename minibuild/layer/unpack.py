"""Layer blob → a directory usable as an overlay lowerdir (whiteouts as 0:0 chardevs, opaque xattrs).

The tar is hostile input: no entry may land outside the target or be written through a symlink.
members.py reads it (names checked, whiteouts decoded, the DiffID hashed); this module applies it.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from minibuild.fs import dirstack
from minibuild.layer import owners
from minibuild.errors import LayerError
from minibuild.layer.compression import CHUNK
from minibuild.layer.members import kept_xattrs, safe_parts, walk_layer
from minibuild.layer.snapshot import LayerSummary
from minibuild.layer.whiteout import TarWhiteout, WhiteoutKind
from minibuild.layer.xattrs import TRUSTED_OPAQUE, opaque_xattr
from minibuild.oci.digest import Digest

OPAQUE_XATTR = TRUSTED_OPAQUE  # what our mounts read as real root; see opaque_xattr()


def summarize_layer(blob: BinaryIO, media_type: str) -> tuple[Digest, LayerSummary]:
    """Read a layer without extracting it: its DiffID and summary (names are still validated)."""
    return walk_layer(blob, media_type, lambda *args: None)


def unpack_layer(blob: BinaryIO, media_type: str, target: Path) -> tuple[Digest, LayerSummary]:
    """Extract a layer into the empty dir `target` in overlay lowerdir form; return DiffID, summary."""
    target = Path(target)
    if any(target.iterdir()):
        raise LayerError(f"unpack target {str(target)!r} is not empty")
    extractor = _Extractor(target)
    try:
        result = walk_layer(blob, media_type, extractor.apply)
    except BaseException:
        extractor.close()
        raise
    extractor.finish()
    return result


class _Extractor:
    """Applies members to the target with no path ever resolved through a symlink.

    A cursor (a DirStack and the names it stands on) follows the archive, which is mostly in
    walk order: each member's parent is reached from where the last one was by openat with
    O_NOFOLLOW, never by a path from the root, so depth costs nothing per member (a 10,000-deep
    layer is past PATH_MAX) and no component can be a link. Entries are then named as
    /proc/self/fd/N/NAME, N pinning their verified parent."""

    def __init__(self, target: Path) -> None:
        self.root = os.fsencode(target)
        self.root_user = os.geteuid() == 0
        self.opaque = opaque_xattr()
        self.here = dirstack.DirStack.open(self.root)
        self.names: list[str] = []  # the dirs the cursor stands in, below the root
        self.devices: set[tuple[str, ...]] = set()  # whiteout devices this layer made
        self.dir_attrs: dict[str, tuple[int, float]] = {}  # "a/b" -> mode, mtime: set last
        self.current: tuple[str, ...] = ()  # the member being applied

    def _path(self, parts: tuple[str, ...]) -> bytes:
        """A short path for `parts`, whose parent the cursor must stand in."""
        return dirstack.at(self.here.fd, parts[-1].encode("utf-8", "surrogateescape"))

    def _real_dir(self, parts: tuple[str, ...], name: str, create: bool) -> None:
        """Move the cursor into `parts`, each component a real directory (never a symlink)."""
        names = self.names
        if len(names) + 1 == len(parts) and tuple(names) == parts[:-1]:  # one level down
            self._enter(parts, name, create)
            return
        if len(names) == len(parts) and tuple(names) == parts:  # (C-level compares)
            return
        if len(parts) < len(names) and tuple(names[:len(parts)]) == parts:  # up: finish()
            common = len(parts)
        else:
            common, limit = 0, min(len(names), len(parts))
            while common < limit and names[common] == parts[common]:
                common += 1
        while len(names) > common:
            self.here.pop()
            names.pop()
        for i in range(common, len(parts)):
            self._enter(parts[:i + 1], name, create)

    def _enter(self, sub: tuple[str, ...], name: str, create: bool) -> None:
        """Step the cursor into its subdir sub[-1] (made when missing and `create`)."""
        part = sub[-1].encode("utf-8", "surrogateescape")
        if sub in self.devices and create:
            self._whiteout_to_dir(sub)
        try:
            self.here.push(part)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"layer entry {name!r}: {'/'.join(sub)!r} does not exist")
            os.mkdir(part, 0o755, dir_fd=self.here.fd)
            self.here.push(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LayerError(f"layer entry {name!r} goes through the symlink {'/'.join(sub)!r}")
            if exc.errno == errno.ENOTDIR:
                raise LayerError(f"layer entry {name!r}: {'/'.join(sub)!r} is not a directory")
            raise
        self.names.append(sub[-1])

    def _whiteout_to_dir(self, parts: tuple[str, ...]) -> int:
        """`.wh.x` then `x/...` in one layer: x was deleted below and recreated, so opaque."""
        path = self._path(parts)
        os.unlink(path)
        self.devices.discard(parts)
        os.mkdir(path, 0o755)
        os.setxattr(path, self.opaque, b"y")
        return stat.S_IFDIR

    def _clear(self, parts: tuple[str, ...], keep_dir: bool) -> bool:
        """Remove what stands at `parts` unless it is a dir we keep; True when a dir was kept."""
        path = self._path(parts)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            dirstack.remove_at(self.here.fd, parts[-1].encode("utf-8", "surrogateescape"))
            self.devices = {d for d in self.devices if d[: len(parts)] != parts}
            prefix = "/".join(parts)
            self.dir_attrs = {k: v for k, v in self.dir_attrs.items()
                              if k != prefix and not k.startswith(prefix + "/")}
        else:
            os.unlink(path)
        return False

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...],
              wo: TarWhiteout | None) -> None:
        """Apply one member (called in archive order)."""
        self.current = parts
        self._real_dir(parts[:-1], member.name, create=True)
        if wo is not None:
            self._whiteout(parts, wo)
        elif member.isdir():
            self._directory(parts, member)
        else:
            self.devices.discard(parts)  # a file over a whiteout hides the lower path by itself
            self._clear(parts, keep_dir=False)
            self._non_dir(tf, member, parts)

    def _whiteout(self, parts: tuple[str, ...], wo: TarWhiteout) -> None:
        if wo.kind is WhiteoutKind.OPAQUE:
            os.setxattr(self.here.fd, self.opaque, b"y")  # the cursor stands in the parent
            return
        hidden = parts[:-1] + (wo.hidden,)
        path = self._path(hidden)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))
            self.devices.add(hidden)
            return
        if stat.S_ISDIR(mode):  # x came first in this layer: x replaces the lower x entirely
            os.setxattr(path, self.opaque, b"y")

    def _directory(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        was_whiteout = parts in self.devices
        if was_whiteout:
            self._whiteout_to_dir(parts)
        elif not self._clear(parts, keep_dir=True):
            os.mkdir(self._path(parts), 0o700)
        path = self._path(parts)
        self._owner(path, member)
        _set_xattrs(path, member)
        self.dir_attrs["/".join(parts)] = (member.mode, member.mtime)

    def _non_dir(self, tf: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        path = self._path(parts)
        if member.isreg():
            self._regular(tf, member, path)
            return
        if member.issym():
            os.symlink(member.linkname.encode("utf-8", "surrogateescape"), path)
        elif member.islnk():
            self._hardlink(member, path)
            return  # a link shares its inode's attributes: nothing more to set
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() or member.isblk():
            self._device(member, path)
        else:
            raise LayerError(f"layer entry {member.name!r} has unsupported tar type {member.type!r}")
        self._owner(path, member)
        if not member.issym():
            os.chmod(path, member.mode)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def _regular(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb", buffering=0) as out:
            source = tf.extractfile(member)
            while chunk := source.read(CHUNK):
                out.write(chunk)
            if self.root_user:
                owners.chown(fd, member)
            os.fchmod(fd, member.mode)  # after chown, which clears setuid
            _set_xattrs(fd, member)  # after write and chown, which clear security.capability
            os.utime(fd, (member.mtime, member.mtime))

    def _hardlink(self, member: tarfile.TarInfo, path: bytes) -> None:
        source = safe_parts(member.linkname, f"hardlink {member.name!r}: target")
        if not source:
            raise LayerError(f"layer hardlink {member.name!r} points at the layer root")
        target = self._target()
        self._real_dir(source[:-1], member.name, create=False)
        src_dir = os.dup(self.here.fd)
        try:
            src = self._path(source)
            try:
                mode = os.lstat(src).st_mode
            except FileNotFoundError:
                raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: no such entry")
            if stat.S_ISDIR(mode) or source in self.devices:
                raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: not a file")
            self._real_dir(target[:-1], member.name, create=False)
            os.link(_raw(source[-1]), _raw(target[-1]), src_dir_fd=src_dir,
                    dst_dir_fd=self.here.fd, follow_symlinks=False)
        finally:
            os.close(src_dir)

    def _target(self) -> tuple[str, ...]:
        """The parts of the member being applied (set by apply)."""
        return self.current

    def _device(self, member: tarfile.TarInfo, path: bytes) -> None:
        if not self.root_user:
            raise LayerError(f"layer entry {member.name!r} is a device node: unpacking needs root")
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            raise LayerError(f"layer entry {member.name!r} is a 0:0 device (a raw overlay whiteout)")
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        owners.mknod(path, kind | 0o600, member)

    def _owner(self, path: bytes, member: tarfile.TarInfo) -> None:
        if self.root_user:
            owners.chown(path, member)

    def finish(self) -> None:
        """Set directory modes and mtimes last, children before parents (reverse path order),
        so children do not disturb them; then let go of the cursor."""
        try:
            for rel in sorted(self.dir_attrs, reverse=True):
                parts = tuple(rel.split("/"))
                self._real_dir(parts[:-1], rel, create=False)
                path = self._path(parts)
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
                mode, mtime = self.dir_attrs[rel]
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime), follow_symlinks=False)
        finally:
            self.close()

    def close(self) -> None:
        """Close the cursor's fds."""
        self.here.close()


def _raw(name: str) -> bytes:
    """A member's name component as the bytes the file system holds."""
    return name.encode("utf-8", "surrogateescape")


def _set_xattrs(where: int | bytes, member: tarfile.TarInfo) -> None:
    """Apply the member's kept xattrs."""
    for name, value in kept_xattrs(member).items():
        os.setxattr(where, name, value)
