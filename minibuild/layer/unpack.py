"""Layer blob → a directory usable as an overlay lowerdir (whiteouts as 0:0 chardevs, opaque xattrs).

The tar is hostile input: no entry may land outside the target or be written through a symlink.
The DiffID (sha256 of the decompressed stream) is computed while reading, for the caller to verify.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from minibuild.layer import whiteout
from minibuild.oci.digest import Digest
from minibuild.errors import LayerError
from minibuild.layer.compression import CHUNK, DECODE_ERRORS, open_uncompressed
from minibuild.layer.snapshot import LayerSummary
from minibuild.layer.whiteout import TarWhiteout, WhiteoutKind

OPAQUE_XATTR = "trusted.overlay.opaque"  # what our (non-userxattr) mounts read
_XATTR_PAX = "SCHILY.xattr."
_DECODE_ERRORS = (*DECODE_ERRORS, tarfile.TarError)


class _HashingReader(io.RawIOBase):
    """Hashes every byte read through it: the DiffID, with no second pass."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        """Always: this is a read-only stream."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Read and hash up to `size` bytes."""
        data = self._raw.read(size)
        self.hash.update(data)
        return data

    def drain(self) -> Digest:
        """Hash what the tar reader left unread (end blocks, record padding) and return the DiffID."""
        while self.read(CHUNK):
            pass
        return Digest.from_hash(self.hash)


def _members(stream: io.RawIOBase):
    """Yield tar members one by one without the TarFile keeping them all (memory stays flat)."""
    tf = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
    while True:
        member = tf.next()
        if member is None:
            return
        tf.members.clear()  # stream mode appends every member; we never look back
        yield tf, member


def _parts(name: str, what: str = "entry") -> tuple[str, ...]:
    """Split an archive path into safe components; LayerError for absolute or climbing names."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r} is an absolute path")
    if "\0" in name:
        raise LayerError(f"layer {what} {name!r} contains a NUL byte")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r} climbs out of the layer with '..'")
    return parts


def _classify(parts: tuple[str, ...], name: str) -> TarWhiteout | None | bool:
    """The entry's whiteout meaning; False for aufs bookkeeping to skip; LayerError when invalid."""
    if any(whiteout.skip_for_parent(name, part) for part in parts[:-1]):
        return False
    wo = whiteout.parse_tar_path("/".join(parts))
    if wo is not None and wo.kind is WhiteoutKind.META:
        return False
    return wo


class _SummaryBuilder:
    """The LayerSummary of a tar, tolerant of a path appearing twice (the last entry wins)."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.bodies: dict[str, int] = {}  # paths whose entry carried data
        self.whiteouts: list[str] = []
        self.opaques: list[str] = []

    def entry(self, path: str, member: tarfile.TarInfo, wo: TarWhiteout | None) -> None:
        """Account one member."""
        if wo is not None:
            target = self.opaques if wo.kind is WhiteoutKind.OPAQUE else self.whiteouts
            target.append(wo.path)
            return
        self.files.pop(path, None)
        self.bodies.pop(path, None)
        if member.isdir():
            return
        if member.islnk():  # same size as its target, as snapshot reports it; bytes counted once
            self.files[path] = self.files.get("/".join(_parts(member.linkname)), 0)
            return
        self.files[path] = member.size if member.isreg() else 0
        if member.isreg():
            self.bodies[path] = member.size

    def build(self) -> LayerSummary:
        """The frozen summary."""
        return LayerSummary(tuple(self.files.items()), tuple(self.whiteouts),
                            tuple(self.opaques), sum(self.bodies.values()))


def walk_layer(blob: BinaryIO, media_type: str, apply) -> tuple[Digest, LayerSummary]:
    """Walk every member once as unpack sees it, calling apply(tf, member, parts, wo) in archive
    order (names validated, aufs bookkeeping skipped, whiteouts decoded); hash the whole stream."""
    reader = _HashingReader(open_uncompressed(blob, media_type))
    summary = _SummaryBuilder()
    try:
        for tf, member in _members(reader):
            parts = _parts(member.name)
            if not parts:
                continue  # "./": the layer root; overlay takes root attributes from the upper dir
            wo = _classify(parts, member.name)
            if wo is False:
                continue
            if member.islnk():
                _parts(member.linkname, f"hardlink {member.name!r}: target")
            try:
                apply(tf, member, parts, wo)
            except OSError as e:
                raise LayerError(f"layer entry {member.name!r} cannot be applied: {e}") from e
            summary.entry("/".join(parts), member, wo)
        return reader.drain(), summary.build()
    except _DECODE_ERRORS as e:
        raise LayerError(f"layer is not a readable {media_type} tar: {e}") from e


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
        os.setxattr(path, OPAQUE_XATTR, b"y")
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
            shutil.rmtree(path)
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
            os.setxattr(self._path(parts[:-1]) if len(parts) > 1 else self.root, OPAQUE_XATTR, b"y")
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
            os.setxattr(path, OPAQUE_XATTR, b"y")

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
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode)  # after chown, which clears setuid
            _set_xattrs(fd, member)  # after write and chown, which clear security.capability
            os.utime(fd, (member.mtime, member.mtime))

    def _hardlink(self, member: tarfile.TarInfo, path: bytes) -> None:
        source = _parts(member.linkname, f"hardlink {member.name!r}: target")
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
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))

    def _owner(self, path: bytes, member: tarfile.TarInfo) -> None:
        if self.root_user:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory modes and mtimes last, deepest first, so children do not disturb them."""
        for parts in sorted(self.dir_attrs, key=len, reverse=True):
            path = self._path(parts)
            if parts not in self.dirs or not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            mode, mtime = self.dir_attrs[parts]
            os.chmod(path, mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def kept_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """The xattrs of a member that unpack sets; overlay's own (trusted.overlay.*) never come from a tar."""
    kept = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX):
            continue
        name = key[len(_XATTR_PAX):]
        if whiteout.keep_xattr(name):
            kept[name] = value.encode("utf-8", "surrogateescape")
    return kept


def _set_xattrs(where: int | bytes, member: tarfile.TarInfo) -> None:
    """Apply the member's kept xattrs."""
    for name, value in kept_xattrs(member).items():
        os.setxattr(where, name, value)
