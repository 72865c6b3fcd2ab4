"""The store on disk: an OCI image layout plus unpacked layers, with atomic writes and locks.

    ROOT/oci/            OCI image layout (oci-layout, index.json, blobs/sha256/<hex>)
    ROOT/layers/<id>/    one unpacked layer per DiffID, in overlay lowerdir format, shared
    ROOT/meta/<hex>.json per-layer summary (file sizes, whiteouts) for history and accounting
    ROOT/run/<session>/  scratch of one live minibuild process (temp blobs, upper dirs)
    ROOT/locks/          flock files: `index` (index.json updates), `gc` (shared while in use)
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from minibuild.fs.files import remove_tree, write_atomic
from minibuild.fs.lock import FileLock
from minibuild.store import mounts, topdir
from minibuild.oci.digest import Digest
from minibuild.errors import ImageNotFound, StoreError
from minibuild.oci.image import (INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME_ANNOTATION, Config,
                             Descriptor, Image, Layer, Manifest, canonical_json)
from minibuild.store.paths import default_root  # noqa: F401 - callers import it from here
from minibuild.oci.reference import Reference

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
LAYER_ID_LEN = 16  # short dir names keep overlay's lowerdir option small
_BUFSIZE = 1 << 20


class BlobWriter:
    """A blob being written: a temp file in the session dir, hashed as it is written."""

    def __init__(self, store: Store) -> None:
        import hashlib

        self._store = store
        self._tmp = store.session_dir() / f"blob-{secrets.token_hex(8)}"
        self._file = open(self._tmp, "wb", buffering=_BUFSIZE)
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
        final = self._store.blob_path(digest)
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


class Store:
    """The on-disk store; open it with `Store.open(root)` as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.oci = self.root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.meta = self.root / "meta"
        self.run = self.root / "run"
        self.locks = self.root / "locks"
        self._session: Path | None = None
        self._session_lock: FileLock | None = None
        self._gc_lock: FileLock | None = None

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Store:
        """Create the layout if needed, take the shared in-use lock, remove dead sessions."""
        store = cls(root)
        try:
            for d in (store.blobs, store.layers, store.meta, store.run, store.locks):
                d.mkdir(parents=True, exist_ok=True)
            layout = store.oci / "oci-layout"
            if not layout.exists():
                store.write_file_atomic(layout, canonical_json(OCI_LAYOUT))
            if not (store.oci / "index.json").exists():
                store._write_index([])
        except OSError as exc:
            raise StoreError(f"cannot use store at {root}: {exc.strerror or exc}") from exc
        store._gc_lock = FileLock(store.locks / "gc", exclusive=False)
        store.clean_stale()
        return store

    def close(self) -> None:
        """Remove this process's scratch session and release the locks."""
        if self._session is not None:
            remove_tree(self._session)
            self._session = None
        for lock in (self._session_lock, self._gc_lock):
            if lock is not None:
                lock.release()
        self._session_lock = self._gc_lock = None

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
        if self._session is None:
            path = self.run / f"{os.getpid()}-{secrets.token_hex(4)}"
            path.mkdir()
            topdir.spread_children(path)  # each scratch tree in a roomy ext4 group (see topdir)
            self._session_lock = FileLock(path / ".lock")
            self._session = path
        return self._session

    def scratch(self, prefix: str) -> Path:
        """A fresh empty dir inside the session."""
        path = self.session_dir() / f"{prefix}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def clean_stale(self) -> list[Path]:
        """Remove sessions whose process died (its lock is free): mounts first, then files."""
        removed = []
        for session in sorted(self.run.iterdir()):
            if session == self._session or _owner_alive(session.name):
                continue  # a session being created is not locked yet: its pid says it is alive
            try:
                lock = FileLock(session / ".lock", wait=False)
            except BlockingIOError:
                continue  # alive
            except OSError:
                lock = None
            try:
                mounts.detach_below(session)
                remove_tree(session)
                removed.append(session)
            finally:
                if lock is not None:
                    lock.release()
        return removed

    # -- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it exists)."""
        return self.blobs / digest.hex

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
                raise StoreError(f"no space left on device while writing a blob under {self.root}") from exc
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

    # -- images and tags ---------------------------------------------------------------------

    def write_image(self, image: Image) -> Descriptor:
        """Store the config and the manifest of an image; return the manifest descriptor."""
        from minibuild.oci.image import CONFIG_MEDIA_TYPE

        config = self.put_bytes(image.config_bytes(), CONFIG_MEDIA_TYPE)
        manifest = image.manifest(config)
        return self.put_bytes(canonical_json(manifest.to_json()), MANIFEST_MEDIA_TYPE)

    def load_image(self, manifest_descriptor: Descriptor) -> Image:
        """Read an image (manifest + config) from its manifest descriptor."""
        try:
            manifest = Manifest.from_json(self.read_json(manifest_descriptor.digest))
            config = Config.from_json(self.read_json(manifest.config.digest))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"image {manifest_descriptor.digest} is not a readable image "
                             f"manifest and config ({type(exc).__name__}: {exc})") from None
        if len(config.diff_ids) != len(manifest.layers):
            raise StoreError(f"image {manifest_descriptor.digest}: {len(manifest.layers)} layers "
                             f"but {len(config.diff_ids)} diff_ids")
        layers = tuple(Layer(d, i) for d, i in zip(manifest.layers, config.diff_ids))
        return Image(config=config, layers=layers)

    def tags(self) -> list[tuple[str, Descriptor]]:
        """Every (ref name, manifest descriptor) in index.json, in order."""
        out = []
        for entry in self._read_index():
            desc = Descriptor.from_json(entry)
            name = desc.annotation(REF_NAME_ANNOTATION)
            if name:
                out.append((name, desc))
        return out

    def tag(self, ref: Reference, manifest: Descriptor) -> None:
        """Point `name:tag` at a manifest (replacing what it pointed at)."""
        ref_name = ref.ref_name
        entry = Descriptor(manifest.media_type, manifest.digest, manifest.size,
                           ((REF_NAME_ANNOTATION, ref_name),)).to_json()
        with self._index_lock():
            entries = [e for e in self._read_index()
                       if (e.get("annotations") or {}).get(REF_NAME_ANNOTATION) != ref_name]
            entries.append(entry)
            entries.sort(key=lambda e: (e.get("annotations") or {}).get(REF_NAME_ANNOTATION, ""))
            self._write_index(entries)

    def untag(self, ref_name: str) -> bool:
        """Remove the tag `name:tag` from index.json (blobs stay); False when it was not there."""
        with self._index_lock():
            entries = self._read_index()
            kept = [e for e in entries
                    if (e.get("annotations") or {}).get(REF_NAME_ANNOTATION) != ref_name]
            if len(kept) == len(entries):
                return False
            self._write_index(kept)
        return True

    def resolve(self, text: str) -> tuple[str, Descriptor]:
        """Find an image by `name[:tag]`, `name@digest`, or an id prefix; ImageNotFound else."""
        tags = self.tags()
        try:
            ref = Reference.parse(text)
        except Exception:
            ref = None
        if ref is not None and ref.digest is None:
            for name, desc in tags:
                if name == ref.ref_name:
                    return name, desc
        if ref is not None and ref.digest is not None:
            found = self._manifest_descriptor(ref.digest)
            if found is not None:
                return str(ref), found
        found = self._resolve_id_prefix(text.removeprefix("sha256:"), tags)
        if found is not None:
            return found
        untagged = self._resolve_untagged(text)
        if untagged is not None:
            return untagged
        raise ImageNotFound(f"image not found: {text}",
                            hint="`minibuild images` lists the images in the store")

    def _resolve_untagged(self, text: str) -> tuple[str, Descriptor] | None:
        """An untagged image named by its full manifest digest (`sha256:<hex>` or `<hex>`)."""
        try:
            digest = Digest.parse(text if text.startswith("sha256:") else f"sha256:{text}")
        except Exception:
            return None
        found = self._manifest_descriptor(digest)
        return (str(digest), found) if found is not None else None

    def _manifest_descriptor(self, digest: Digest) -> Descriptor | None:
        """A descriptor for a stored blob that is an image manifest; None for any other blob."""
        if not self.has_blob(digest):
            return None
        data = self.read_blob(digest)
        try:
            manifest = json.loads(data)
        except ValueError:
            return None
        if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2 \
                or not isinstance(manifest.get("layers"), list) or "config" not in manifest:
            return None
        return Descriptor(manifest.get("mediaType") or MANIFEST_MEDIA_TYPE, digest, len(data))

    def _resolve_id_prefix(self, prefix: str, tags: list[tuple[str, Descriptor]]) -> tuple[str, Descriptor] | None:
        """An image whose manifest digest or config digest (its id) starts with `prefix`."""
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        for name, desc in tags:
            if desc.digest.hex.startswith(prefix):
                return name, desc
            config = Manifest.from_json(self.read_json(desc.digest)).config
            if config.digest.hex.startswith(prefix):
                return name, desc
        return None

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.oci / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.oci / 'index.json'}: {exc}") from exc
        return list(data.get("manifests") or [])

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries}
        self.write_file_atomic(self.oci / "index.json", canonical_json(index))

    def _index_lock(self) -> FileLock:
        return FileLock(self.locks / "index")

    # -- unpacked layers and their summaries -------------------------------------------------

    def layer_path(self, diff_id: Digest) -> Path:
        """The lowerdir of a layer (whether or not it is unpacked yet)."""
        return self.layers / diff_id.hex[:LAYER_ID_LEN]

    def adopt_layer(self, diff_id: Digest, directory: Path) -> Path:
        """Make a finished upper dir the shared lowerdir of its DiffID (atomic rename)."""
        target = self.layer_path(diff_id)
        if target.exists():
            remove_tree(directory)
            return target
        try:
            os.rename(directory, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            remove_tree(directory)  # another process adopted the same layer first
        return target

    def ensure_layer(self, layer: Layer) -> Path:
        """The lowerdir of a layer, unpacked from its blob first if missing (DiffID checked)."""
        from minibuild.layer import unpack

        target = self.layer_path(layer.diff_id)
        if target.exists():
            return target
        work = self.scratch("unpack")
        tree = work / "tree"
        tree.mkdir(mode=0o755)
        os.chmod(tree, 0o755)  # the layer root's mode must not depend on the caller's umask
        with open(self.blob_path(layer.descriptor.digest), "rb", buffering=_BUFSIZE) as blob:
            diff_id, summary = unpack.unpack_layer(blob, layer.descriptor.media_type, tree)
        if diff_id != layer.diff_id:
            remove_tree(work)
            raise StoreError(f"layer {layer.descriptor.digest} unpacks to DiffID {diff_id}, "
                             f"but the image says {layer.diff_id}")
        self.save_summary(diff_id, summary)
        path = self.adopt_layer(diff_id, tree)
        remove_tree(work)
        return path

    def save_summary(self, diff_id: Digest, summary: Any) -> None:
        """Keep a layer's summary (file sizes, whiteouts) for history and accounting."""
        # ASCII JSON: a file name that is not UTF-8 (kept as surrogates) round-trips as \udcXX.
        data = json.dumps(summary.to_json(), sort_keys=True, separators=(",", ":")).encode()
        self.write_file_atomic(self.meta / f"{diff_id.hex}.json", data, durable=False)

    def layer_summary(self, layer: Layer) -> Any:
        """A layer's summary, computed from its blob if it was never saved or is unreadable."""
        from minibuild.layer import snapshot, unpack

        path = self.meta / f"{layer.diff_id.hex}.json"
        try:
            return snapshot.LayerSummary.from_json(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass  # never saved, or damaged (summaries are written without fsync)
        with open(self.blob_path(layer.descriptor.digest), "rb", buffering=_BUFSIZE) as blob:
            _, summary = unpack.summarize_layer(blob, layer.descriptor.media_type)
        self.save_summary(layer.diff_id, summary)
        return summary

    # -- helpers -----------------------------------------------------------------------------

    def write_file_atomic(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Write a small file of the store atomically (see `write_atomic`)."""
        write_atomic(path, data, durable=durable)


def _owner_alive(session_name: str) -> bool:
    """Whether the pid a session dir is named after (`<pid>-<random>`) is a live process."""
    pid_text = session_name.partition("-")[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
