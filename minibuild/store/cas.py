"""The content store: blobs named by their sha256 digest, under ROOT/oci/blobs/sha256/<hex>.

A blob is written to a temp file on the store's filesystem while it is hashed, fsynced, then
renamed under its digest; an existing blob is kept as it is. A crash never leaves half a blob
under a digest. Blobs are bytes here: nothing about tar, layers or images.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from minibuild.errors import StoreError
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor
from minibuild.store.paths import StorePaths

BUFSIZE = 1 << 20


class BlobWriter:
    """A blob being written: a temp file beside the store, hashed as it is written.

    It leaves nothing behind unless `commit()` is reached (call `abort()` otherwise, or use
    `Blobs.blob_writer()`, which does).
    """

    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs
        self._tmp = blobs.temp_dir() / f"blob-{secrets.token_hex(8)}"
        self._file = open(self._tmp, "wb", buffering=BUFSIZE)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Append bytes to the blob."""
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> Digest:
        """The digest of the bytes written so far (before commit)."""
        return Digest.from_hash(self._hash.copy())

    def staged_path(self) -> Path:
        """The temp file holding the bytes so far, flushed, for reading before `commit()`."""
        self._file.flush()
        return self._tmp

    def commit(self) -> tuple[Digest, int]:
        """Flush, fsync and rename into blobs/sha256/<hex>; an existing blob is kept."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = Digest.from_hash(self._hash)
        final = self._blobs.blob_path(digest)
        if final.exists():
            self._tmp.unlink()
        else:
            os.replace(self._tmp, final)
        return digest, self.size

    def abort(self) -> None:
        """Drop the temp file."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass  # flushing the buffer fails as the write did (disk full): the fd is closed anyway
        finally:
            self._tmp.unlink(missing_ok=True)


class Blobs:
    """The blobs of one store; temp files go to `temp_dir()` (on the same filesystem)."""

    def __init__(self, paths: StorePaths, temp_dir: Callable[[], Path]) -> None:
        self.paths = paths
        self.dir = paths.blobs
        self.temp_dir = temp_dir

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it exists)."""
        return self.dir / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is stored."""
        return self.blob_path(digest).exists()

    @contextmanager
    def blob_writer(self) -> Iterator[BlobWriter]:
        """A writer that leaves nothing behind unless `commit()` is reached."""
        writer = BlobWriter(self)
        try:
            yield writer
        except OSError as exc:
            writer.abort()
            if exc.errno == errno.ENOSPC:
                raise StoreError("no space left on device while writing a blob under "
                                 f"{self.paths.root}") from exc
            raise
        except BaseException:
            writer.abort()
            raise

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store a small blob (config, manifest) and return its descriptor."""
        with self.blob_writer() as writer:
            writer.write(data)
            digest, size = writer.commit()
        return Descriptor(media_type, digest, size)

    def read_blob(self, digest: Digest) -> bytes:
        """The bytes of a blob, verified against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from the store") from None
        if Digest.of(data) != digest:
            raise StoreError(f"blob {digest} is corrupt (its bytes hash to {Digest.of(data)})")
        return data

    def read_json(self, digest: Digest) -> Any:
        """A JSON blob, parsed."""
        return json.loads(self.read_blob(digest))
