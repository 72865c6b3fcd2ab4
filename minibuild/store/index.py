"""The tags: ROOT/oci/index.json (one descriptor per `name:tag`), and finding an image by name.

index.json is rewritten whole (temp + rename) under the `index` lock, so two processes that
tag at once both land and a reader never sees half a file. Every image a tag names is a
manifest blob in the content store.
"""

from __future__ import annotations

import json
from typing import Any

from minibuild.errors import ImageNotFound, StoreError
from minibuild.fs.files import write_atomic
from minibuild.fs.lock import FileLock
from minibuild.oci.digest import Digest
from minibuild.oci.image import REF_NAME_ANNOTATION, Descriptor, Manifest, canonical_json
from minibuild.oci.mediatypes import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.paths import StorePaths
from minibuild.store.ports import BlobStore

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}


def _ref_name(entry: dict[str, Any]) -> str | None:
    """The `name:tag` an index.json entry carries, if any."""
    return (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)


class TagIndex:
    """The tags of one store, over the blobs their manifests live in."""

    def __init__(self, paths: StorePaths, blobs: BlobStore) -> None:
        self.paths = paths
        self.blobs = blobs

    def create(self) -> None:
        """Write `oci-layout` and an empty index.json where they are missing."""
        if not self.paths.oci_layout.exists():
            write_atomic(self.paths.oci_layout, canonical_json(OCI_LAYOUT))
        if not self.paths.index.exists():
            self._write([])

    def tags(self) -> list[tuple[str, Descriptor]]:
        """Every (ref name, manifest descriptor) in index.json, in order."""
        out = []
        for entry in self._read():
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
        with self._lock():
            entries = [e for e in self._read() if _ref_name(e) != ref_name]
            entries.append(entry)
            entries.sort(key=lambda e: _ref_name(e) or "")
            self._write(entries)

    def untag(self, ref_name: str) -> bool:
        """Remove the tag `name:tag` from index.json (blobs stay); False when it was not there."""
        with self._lock():
            entries = self._read()
            kept = [e for e in entries if _ref_name(e) != ref_name]
            if len(kept) == len(entries):
                return False
            self._write(kept)
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
        if not self.blobs.has_blob(digest):
            return None
        data = self.blobs.read_blob(digest)
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
            config = Manifest.from_json(self.blobs.read_json(desc.digest)).config
            if config.digest.hex.startswith(prefix):
                return name, desc
        return None

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.paths.index.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.paths.index}: {exc}") from exc
        return list(data.get("manifests") or [])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries}
        write_atomic(self.paths.index, canonical_json(index))

    def _lock(self) -> FileLock:
        return FileLock(self.paths.index_lock)
