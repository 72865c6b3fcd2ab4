"""The members of a layer tar as unpack and `fsck --deep` read them, in one pass.

The tar is hostile input: every name (and every hard link's target) is split into safe
components, refused when absolute, climbing with `..` or holding a NUL; aufs bookkeeping
(`.wh..wh.*`) is skipped and whiteouts are decoded. The decompressed stream is hashed while it is
read (the DiffID, for the caller to verify) and summarized (what history and accounting need).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import BinaryIO

from minibuild.errors import LayerError
from minibuild.layer import tarfields, whiteout
from minibuild.layer.compression import CHUNK, DECODE_ERRORS, open_uncompressed
from minibuild.layer.snapshot import LayerSummary
from minibuild.layer.whiteout import TarWhiteout, WhiteoutKind
from minibuild.oci.digest import Digest

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


def safe_parts(name: str, what: str = "entry") -> tuple[str, ...]:
    """Split an archive path into safe components; LayerError for absolute or climbing names."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r} is an absolute path")
    if "\0" in name:
        raise LayerError(f"layer {what} {name!r} contains a NUL byte")
    parts = name.split("/")
    if "" in parts or "." in parts:  # (C-level checks: names may have 10,000 components)
        parts = [p for p in parts if p not in ("", ".")]
    parts = tuple(parts)
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r} climbs out of the layer with '..'")
    return parts


def _classify(parts: tuple[str, ...], name: str) -> TarWhiteout | None | bool:
    """The entry's whiteout meaning; False for aufs bookkeeping to skip; LayerError when invalid."""
    if whiteout.WHITEOUT_PREFIX in name and any(  # a substring test first: deep names are long
            whiteout.skip_for_parent(name, part) for part in parts[:-1]):
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
            self.files[path] = self.files.get("/".join(safe_parts(member.linkname)), 0)
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
            parts = safe_parts(member.name)
            if not parts:
                continue  # "./": the layer root; overlay takes root attributes from the upper dir
            wo = _classify(parts, member.name)
            if wo is False:
                continue
            if member.islnk():
                safe_parts(member.linkname, f"hardlink {member.name!r}: target")
            tarfields.check_member(member)
            try:
                apply(tf, member, parts, wo)
            except OSError as e:
                raise LayerError(f"layer entry {member.name!r} cannot be applied: {e}") from e
            summary.entry("/".join(parts), member, wo)
        return reader.drain(), summary.build()
    except _DECODE_ERRORS as e:
        raise LayerError(f"layer is not a readable {media_type} tar: {e}") from e


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
