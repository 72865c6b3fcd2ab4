"""The tar of an image archive (`save`, `load`), read and written; the formats inside it are
oci_archive.py's and docker_archive.py's.

Reading treats the tar as hostile: member names may not be absolute or climb, links may only
point at other members, metadata files are size-limited, and every `blobs/sha256/<hex>` (or
`<hex>.json`) is staged and must hash to its name. Writing is deterministic: fixed owner and
time, members in the order they are added.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

from minibuild.errors import StoreError
from minibuild.oci.digest import Digest
from minibuild.store.layout import Store
from minibuild.store.staging import JSON_LIMIT, IntakeError, Staging, parse_json

_METADATA = {"manifest.json", "index.json", "oci-layout", "repositories"}
_BLOB_NAME = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_CONFIG_NAME = re.compile(r"^([0-9a-f]{64})\.json$")
_IGNORED = re.compile(r"^[^/]+/(json|VERSION)$")  # old docker save: per-layer v1 metadata
_CHUNK = 1 << 20
_MAX_LINK_DEPTH = 16


class ArchiveError(IntakeError):
    """An archive is unreadable or unsafe; the message names the entry."""


@dataclass
class Members:
    """What an archive held: staged blobs by member path, small metadata files, links."""

    blobs: dict[str, Digest] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def blob(self, path: str, what: str) -> Digest:
        """The staged digest of a member, following links inside the archive."""
        seen = 0
        name = normalize(path, what)
        while name in self.links and seen < _MAX_LINK_DEPTH:
            name, seen = self.links[name], seen + 1
        if name not in self.blobs:
            raise ArchiveError(f"{what}: the archive has no entry {path!r}")
        return self.blobs[name]

    def json(self, name: str) -> object:
        """A metadata file, parsed."""
        return parse_json(self.metadata[name], f"archive entry {name!r}")


def normalize(name: str, what: str = "archive entry") -> str:
    """A member path without `./` and duplicate slashes; absolute or climbing names refused."""
    if name.startswith("/") or "\0" in name:
        raise ArchiveError(f"{what} {name!r} is an absolute path" if name.startswith("/")
                           else f"{what} {name!r} contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what} {name!r} climbs out of the archive with '..'")
    return "/".join(parts)


def link_target(base: str, target: str, what: str) -> str:
    """A link's target as a member path: `..` resolved inside the archive, never above its root."""
    if target.startswith("/") or "\0" in target:
        raise ArchiveError(f"{what}: link target {target!r} is absolute" if target.startswith("/")
                           else f"{what}: link target {target!r} contains a NUL byte")
    stack = [p for p in base.split("/") if p]
    for part in target.split("/"):
        if part == "..":
            if not stack:
                raise ArchiveError(f"{what}: link target {target!r} climbs out of the archive")
            stack.pop()
        elif part not in ("", "."):
            stack.append(part)
    return "/".join(stack)


def read_members(stream: BinaryIO, staging: Staging, source: str) -> Members:
    """Stream through the tar once, staging blobs and keeping metadata; ArchiveError on bad input."""
    members = Members()
    current = "(start)"
    try:
        tf = tarfile.open(fileobj=stream, mode="r|*")
        for member in tf:
            current = member.name
            _take(tf, member, members, staging)
            tf.members.clear()
    except tarfile.TarError as exc:
        raise ArchiveError(f"{source} is not a readable tar archive (at entry {current!r}): {exc}") from None
    except EOFError:
        raise ArchiveError(f"{source} is truncated (at entry {current!r})") from None
    return members


def _take(tf: tarfile.TarFile, member: tarfile.TarInfo, members: Members, staging: Staging) -> None:
    """Record one member: a link alias, metadata in memory, or a staged blob."""
    name = normalize(member.name)
    what = f"archive entry {member.name!r}"
    if not name or member.isdir() or _IGNORED.match(name):
        return
    if name in members.blobs or name in members.metadata or name in members.links:
        raise ArchiveError(f"{what} appears twice")
    if member.issym() or member.islnk():
        base = name.rsplit("/", 1)[0] if member.issym() and "/" in name else ""
        members.links[name] = link_target(base, member.linkname, what)
        return
    if not member.isreg():
        raise ArchiveError(f"{what} is a device, fifo or other special file, not part of an image archive")
    source = tf.extractfile(member)
    if name in _METADATA:
        if member.size > JSON_LIMIT:
            raise ArchiveError(f"{what} is too large ({member.size} bytes; metadata is at most {JSON_LIMIT})")
        members.metadata[name] = source.read()
        return
    match = _BLOB_NAME.match(name) or _CONFIG_NAME.match(name)
    expected = Digest(match.group(1)) if match else None
    members.blobs[name], _ = staging.stage(iter(lambda: source.read(_CHUNK), b""), what, expected)


# -- writing ---------------------------------------------------------------------------------


class TarOut:
    """A deterministic tar stream: fixed owner and time, members in the order they are added."""

    def __init__(self, out: BinaryIO) -> None:
        self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT)
        self._names: set[str] = set()

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add a file from memory."""
        self.add_file(name, io.BytesIO(data), len(data))

    def add_file(self, name: str, source: BinaryIO, size: int) -> bool:
        """Add a file from a reader holding exactly `size` bytes; False (nothing read) for a name
        already added."""
        if name in self._names:
            return False
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        info.uname = info.gname = ""
        self._tar.addfile(info, source)
        return True

    def add_dir(self, name: str) -> None:
        """Add a directory entry."""
        if name in self._names:
            return
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
        self._tar.addfile(info)

    def close(self) -> None:
        """Write the end-of-archive blocks."""
        self._tar.close()


class _HashingReader:
    """Hashes what is read through it: a blob is verified as it is copied, not read twice."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """Read and hash up to `size` bytes."""
        data = self._source.read(size)
        self.hash.update(data)
        return data


def add_blob(tar: TarOut, store: Store, digest: Digest) -> None:
    """Copy a stored blob into the archive under blobs/sha256/<hex>, checking its digest as it
    goes: a corrupt blob ends the archive with a StoreError naming it (a file given with -o is
    then not written at all)."""
    try:
        f = open(store.blob_path(digest), "rb", buffering=_CHUNK)
    except FileNotFoundError:
        raise StoreError(f"blob {digest} is missing from the store",
                         hint="`minibuild fsck` checks the whole store") from None
    with f:
        reader = _HashingReader(f)
        added = tar.add_file(f"blobs/sha256/{digest.hex}", reader, os.fstat(f.fileno()).st_size)
    actual = Digest.from_hash(reader.hash)
    if added and actual != digest:
        raise StoreError(f"blob {digest} is corrupt: its bytes hash to {actual}; the archive "
                         "is not complete", hint="`minibuild fsck` checks the whole store")
