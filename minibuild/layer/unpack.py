"""Layer blob → a directory usable as an overlay lowerdir (whiteouts as 0:0 chardevs, opaque xattrs).

The tar is hostile input: no entry may land outside the target or be written through a symlink.
members.py reads it (names checked, whiteouts decoded, the DiffID hashed); this module applies it.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from minibuild.fs.files import remove_tree
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
    result = walk_layer(blob, media_type, extractor.apply)
    extractor.finish()
    return result


class _Extractor:
    """Applies members to the target with no path ever resolved through a symlink."""

    def __init__(self, target: Path) -> None:
        self.root = os.fsencode(target)
        self.root_user = os.geteuid() == 0
        self.opaque = opaque_xattr()
        self.dirs: set[tuple[str, ...]] = set()  # verified real directories
        self.devices: set[tuple[str, ...]] = set()  # whiteout devices this layer made
        self.dir_attrs: dict[tuple[str, ...], tuple[int, float]] = {}  # mode, mtime: set last

    def _path(self, parts: tuple[str, ...]) -> bytes:
        return b"/".join((self.root, *(p.encode("utf-8", "surrogateescape") for p in parts)))

    def _real_dir(self, parts: tuple[str, ...], name: str, create: bool) -> None:
        """Make sure every prefix of `parts` is a real directory (never a symlink)."""
        for i in range(1, len(parts) + 1):
            sub = parts[:i]
            if sub in self.dirs:
                continue
            path = self._path(sub)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                if not create:
                    raise LayerError(f"layer entry {name!r}: {'/'.join(sub)!r} does not exist")
                os.mkdir(path, 0o755)
                mode = stat.S_IFDIR
            if sub in self.devices and create:
                mode = self._whiteout_to_dir(sub)
            if stat.S_ISLNK(mode):
                raise LayerError(f"layer entry {name!r} goes through the symlink {'/'.join(sub)!r}")
            if not stat.S_ISDIR(mode):
                raise LayerError(f"layer entry {name!r}: {'/'.join(sub)!r} is not a directory")
            self.dirs.add(sub)

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
            remove_tree(path)
            self.dirs = {d for d in self.dirs if d[: len(parts)] != parts}
            self.devices = {d for d in self.devices if d[: len(parts)] != parts}
        else:
            os.unlink(path)
        return False

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...],
              wo: TarWhiteout | None) -> None:
        """Apply one member (called in archive order)."""
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
            os.setxattr(self._path(parts[:-1]) if len(parts) > 1 else self.root, self.opaque, b"y")
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
        self.dirs.add(parts)
        path = self._path(parts)
        self._owner(path, member)
        _set_xattrs(path, member)
        self.dir_attrs[parts] = (member.mode, member.mtime)

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
        self._real_dir(source[:-1], member.name, create=False)
        src = self._path(source)
        try:
            mode = os.lstat(src).st_mode
        except FileNotFoundError:
            raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: no such entry")
        if stat.S_ISDIR(mode) or source in self.devices:
            raise LayerError(f"layer hardlink {member.name!r} -> {member.linkname!r}: not a file")
        os.link(src, path, follow_symlinks=False)

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
        """Set directory modes and mtimes last, deepest first, so children do not disturb them."""
        for parts in sorted(self.dir_attrs, key=len, reverse=True):
            path = self._path(parts)
            if parts not in self.dirs or not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            mode, mtime = self.dir_attrs[parts]
            os.chmod(path, mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _set_xattrs(where: int | bytes, member: tarfile.TarInfo) -> None:
    """Apply the member's kept xattrs."""
    for name, value in kept_xattrs(member).items():
        os.setxattr(where, name, value)
