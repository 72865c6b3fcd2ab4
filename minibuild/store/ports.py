"""The seams between the store and its users, as small `typing.Protocol`s.

Code that only needs blobs (the engine's snapshots, transfer, image reading) asks for a
`BlobStore`; the real `cas.Blobs` and the `layout.Store` facade both are one, and a unit test
can pass a dict-backed fake.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor


class BlobSink(Protocol):
    """A blob being written: bytes in, then `commit()` for its digest and size."""

    size: int

    def write(self, data: bytes) -> int:
        """Append bytes to the blob."""
        ...

    def commit(self) -> tuple[Digest, int]:
        """Store the bytes under their digest; return (digest, size)."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """What the engine and transfer need of a content store."""

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it exists)."""
        ...

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is stored."""
        ...

    def blob_writer(self) -> AbstractContextManager[BlobSink]:
        """A writer that leaves nothing behind unless `commit()` is reached."""
        ...

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store a small blob and return its descriptor."""
        ...

    def read_blob(self, digest: Digest) -> bytes:
        """The bytes of a blob, verified against its digest (StoreError when missing or corrupt)."""
        ...

    def read_json(self, digest: Digest) -> Any:
        """A JSON blob, parsed."""
        ...
