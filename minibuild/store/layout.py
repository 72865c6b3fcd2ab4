"""The store on disk, as one object: an OCI image layout plus unpacked layers and sessions.

`Store` composes the pieces, each its own module: `cas` (blobs), `index` (tags), `images`
(config + manifest blobs), `layers` (unpacked dirs and summaries), `session` (this process's
scratch); `paths` names every path under the root. Code that needs one piece may take it
(`store.cas`, `store.index`, `store.layer_dirs`, `store.session`); the methods here forward.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Mapping

from minibuild.errors import StoreError
from minibuild.fs.files import write_atomic
from minibuild.fs.lock import FileLock
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.store import images, permissions
from minibuild.store.cas import Blobs, BlobWriter
from minibuild.store.index import Found, StoredImage, TagIndex
from minibuild.store.layers import LayerDirs
from minibuild.store.paths import StorePaths
from minibuild.store.session import Session


class Store:
    """The on-disk store; open it with `Store.open(root)` as a context manager."""

    def __init__(self, root: Path) -> None:
        self.paths = StorePaths.at(root)
        self.root = self.paths.root
        self.session = Session(self.paths.run)
        self.cas = Blobs(self.paths, self.session.dir)
        self.index = TagIndex(self.paths, self.cas)
        self.layer_dirs = LayerDirs(self.paths, self.cas, self.session.scratch)
        self._gc_lock: FileLock | None = None

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Store:
        """Create the layout if needed (the root only its owner may enter: see `permissions`),
        take the shared in-use lock, remove dead sessions."""
        store = cls(root)
        paths = store.paths
        try:
            permissions.secure_root(paths)
            for d in (paths.blobs, paths.layers, paths.meta, paths.run, paths.locks):
                d.mkdir(parents=True, exist_ok=True)
            store.index.create()
        except OSError as exc:
            raise StoreError(f"cannot use store at {root}: {exc.strerror or exc}") from exc
        store._gc_lock = FileLock(paths.gc_lock, exclusive=False)
        store.session.clean_stale()
        return store

    def close(self) -> None:
        """Remove this process's scratch session and release the locks."""
        self.session.close()
        if self._gc_lock is not None:
            self._gc_lock.release()
            self._gc_lock = None

    def lock_exclusive(self) -> None:
        """Turn this store's shared `gc` lock exclusive; StoreError if another process uses the store."""
        assert self._gc_lock is not None, "the store is closed"
        try:
            self._gc_lock.convert(exclusive=True)
        except BlockingIOError:
            raise StoreError(f"the store {self.root} is in use by another minibuild process",
                             hint="try again when the other build or command has ended") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session_dir(self) -> Path:
        """This process's scratch dir (on the store's filesystem), created on first use."""
        return self.session.dir()

    def scratch(self, prefix: str) -> Path:
        """A fresh empty dir inside the session."""
        return self.session.scratch(prefix)

    def clean_stale(self) -> list[Path]:
        """Remove sessions whose process died (see `Session.clean_stale`)."""
        return self.session.clean_stale()

    # -- blobs (cas) -------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it exists)."""
        return self.cas.blob_path(digest)

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is stored."""
        return self.cas.has_blob(digest)

    def blob_writer(self) -> AbstractContextManager[BlobWriter]:
        """A writer that leaves nothing behind unless `commit()` is reached."""
        return self.cas.blob_writer()

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store a small blob (config, manifest) and return its descriptor."""
        return self.cas.put_bytes(data, media_type)

    def read_blob(self, digest: Digest) -> bytes:
        """The bytes of a blob, verified against its digest."""
        return self.cas.read_blob(digest)

    def read_json(self, digest: Digest) -> Any:
        """A JSON blob, parsed."""
        return self.cas.read_json(digest)

    # -- images and tags (images, index) -----------------------------------------------------

    def write_image(self, image: Image) -> Descriptor:
        """Store the config and the manifest of an image; return the manifest descriptor."""
        return images.write_image(self.cas, image)

    def load_image(self, manifest_descriptor: Descriptor) -> Image:
        """Read an image (manifest + config) from its manifest descriptor."""
        return images.load_image(self.cas, manifest_descriptor)

    def tags(self) -> list[tuple[str, Descriptor]]:
        """Every (ref name, manifest descriptor) in index.json, in order."""
        return self.index.tags()

    def images(self) -> list[StoredImage]:
        """Each image of the store once, with its tags (none for a dangling one)."""
        return self.index.images()

    def add_image(self, manifest: Descriptor) -> bool:
        """Keep an image that no tag names (docker's `<none>`) until rmi or prune; True when new."""
        return self.index.add(manifest)

    def forget_image(self, digest: Digest) -> tuple[str, ...]:
        """Drop an image and its tags from the index (blobs stay for gc); the tags it had."""
        return self.index.forget(digest)

    def tag(self, ref: Reference, manifest: Descriptor) -> Descriptor | None:
        """Point `name:tag` at a manifest; the image it pointed at before, if another one
        (kept without a name when no other tag holds it)."""
        return self.index.tag(ref, manifest)

    def untag(self, ref_name: str) -> bool:
        """Remove the tag `name:tag` (the image stays); False when it was not there."""
        return self.index.untag(ref_name)

    def resolve(self, text: str) -> tuple[str, Descriptor]:
        """Find an image by `name[:tag]`, `name@digest`, an ID, a digest or a unique prefix of
        one; ImageNotFound else."""
        return self.index.resolve(text)

    def find(self, text: str) -> Found:
        """Find an image as `resolve` does, saying which tag the text named (None for an ID)."""
        return self.index.find(text)

    def image_id(self, manifest: Descriptor) -> Digest:
        """An image's ID: its config digest (what docker and podman call IMAGE ID)."""
        return self.index.config_digest(manifest)

    # -- unpacked layers and their summaries (layers) ----------------------------------------

    def layer_path(self, diff_id: Digest) -> Path:
        """The lowerdir of a layer (whether or not it is unpacked yet)."""
        return self.layer_dirs.layer_path(diff_id)

    def adopt_layer(self, diff_id: Digest, directory: Path) -> Path:
        """Make a finished upper dir the shared lowerdir of its DiffID (atomic rename)."""
        return self.layer_dirs.adopt_layer(diff_id, directory)

    def ensure_layer(self, layer: Layer) -> Path:
        """The lowerdir of a layer, unpacked from its blob first if missing (DiffID checked)."""
        return self.layer_dirs.ensure_layer(layer)

    def save_summary(self, diff_id: Digest, summary: Any, sources: Mapping[Digest, str] | None = None) -> None:
        """Keep a layer's summary (file sizes, whiteouts) for history and accounting, and the
        blobs (digest -> media type) known to hold its tar."""
        self.layer_dirs.save_summary(diff_id, summary, sources)

    def layer_summary(self, layer: Layer) -> Any:
        """A layer's summary, computed from its blob if it was never saved or is unreadable."""
        return self.layer_dirs.layer_summary(layer)

    # -- helpers -----------------------------------------------------------------------------

    def write_file_atomic(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Write a small file of the store atomically (see `fs.files.write_atomic`)."""
        write_atomic(path, data, durable=durable)
