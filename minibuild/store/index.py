"""The images of a store: ROOT/oci/index.json, one descriptor per `name:tag`, plus one without a
name for each image no tag names (docker's dangling `<none>` images); and finding an image by
name, digest or ID.

index.json is rewritten whole (temp + rename) under the `index` lock, so two processes that
tag at once both land and a reader never sees half a file. Every image an entry names is a
manifest blob in the content store. No image is dropped by a tag moving away or being removed:
it stays as an entry without a name until `forget` (rmi, prune) drops it.

Names are written in docker's familiar form (`debian:12`, not `docker.io/library/debian:12`) and
compared normalised, so a store written before (where a pull could leave the long form) reads the
same: its entries show familiar and are replaced, not duplicated, by a new tag of the same image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from minibuild.errors import ImageNotFound, StoreError
from minibuild.fs.files import write_atomic
from minibuild.fs.lock import FileLock
from minibuild.oci.digest import Digest
from minibuild.oci.image import REF_NAME_ANNOTATION, Descriptor, Manifest, canonical_json
from minibuild.oci.mediatypes import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference, same_image_name
from minibuild.store.paths import StorePaths
from minibuild.store.ports import BlobStore

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
MIN_ID_PREFIX = 4  # hex digits: shorter prefixes are names, never IDs


def _ref_name(entry: dict[str, Any]) -> str | None:
    """The `name:tag` an index.json entry carries, if any."""
    return (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)


def _familiar(name: str) -> str:
    """A stored name as docker shows it (names minibuild cannot parse are shown as they are)."""
    try:
        return Reference.parse(name).ref_name
    except Exception:
        return name


def _names(entry: dict[str, Any], ref_name: str) -> bool:
    """Whether an index.json entry carries `ref_name`, however it spells it."""
    name = _ref_name(entry)
    return name is not None and same_image_name(name, ref_name)


def _plain(manifest: Descriptor) -> dict[str, Any]:
    """The entry of an image without a name."""
    return Descriptor(manifest.media_type, manifest.digest, manifest.size).to_json()


@dataclass(frozen=True)
class StoredImage:
    """One image of the store: its manifest descriptor (no annotations) and its tags, if any."""

    descriptor: Descriptor
    names: tuple[str, ...] = ()

    @property
    def dangling(self) -> bool:
        """No tag names it (docker's `<none>:<none>`)."""
        return not self.names


@dataclass(frozen=True)
class Found:
    """An image found by `TagIndex.find`: its manifest descriptor, and the tag the text named
    (None when it named an ID or a digest)."""

    descriptor: Descriptor
    tag: str | None = None


class TagIndex:
    """The images and tags of one store, over the blobs their manifests live in."""

    def __init__(self, paths: StorePaths, blobs: BlobStore) -> None:
        self.paths = paths
        self.blobs = blobs

    def create(self) -> None:
        """Write `oci-layout` and an empty index.json where they are missing."""
        if not self.paths.oci_layout.exists():
            write_atomic(self.paths.oci_layout, canonical_json(OCI_LAYOUT))
        if not self.paths.index.exists():
            self._write([])

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> list[tuple[str | None, Descriptor]]:
        """Every (ref name or None, manifest descriptor) of index.json, in order."""
        out = []
        for entry in self._read():
            desc = Descriptor.from_json(entry)
            name = desc.annotation(REF_NAME_ANNOTATION)
            out.append((_familiar(name) if name else None, desc))
        return out

    def tags(self) -> list[tuple[str, Descriptor]]:
        """Every (ref name, manifest descriptor) in index.json, in order."""
        return [(name, desc) for name, desc in self.entries() if name]

    def images(self) -> list[StoredImage]:
        """Each image once, with its tags (none for a dangling one), in index order."""
        names: dict[Digest, list[str]] = {}
        plain: dict[Digest, Descriptor] = {}
        for name, desc in self.entries():
            names.setdefault(desc.digest, [])
            plain.setdefault(desc.digest, Descriptor(desc.media_type, desc.digest, desc.size))
            if name:
                names[desc.digest].append(name)
        return [StoredImage(plain[d], tuple(n)) for d, n in names.items()]

    # -- writing ---------------------------------------------------------------------------------

    def add(self, manifest: Descriptor) -> bool:
        """Keep an image without a name unless the index holds it already; True when added."""
        with self._lock():
            entries = self._read()
            if any(e.get("digest") == str(manifest.digest) for e in entries):
                return False
            entries.append(_plain(manifest))
            self._write(self._sorted(entries))
        return True

    def tag(self, ref: Reference, manifest: Descriptor) -> Descriptor | None:
        """Point `name:tag` at a manifest; the image it pointed at before, when another one
        (kept without a name if no other tag holds it)."""
        ref_name = ref.ref_name
        entry = Descriptor(manifest.media_type, manifest.digest, manifest.size,
                           ((REF_NAME_ANNOTATION, ref_name),)).to_json()
        with self._lock():
            entries = self._read()
            old = next((e for e in entries if _names(e, ref_name)), None)
            kept = [e for e in entries if not _names(e, ref_name)
                    and not (e.get("digest") == entry["digest"] and not _ref_name(e))]
            kept.append(entry)
            if old is not None and old.get("digest") != entry["digest"]:
                kept = self._keep_orphan(kept, old)
            self._write(self._sorted(kept))
        if old is None or old.get("digest") == entry["digest"]:
            return None
        return Descriptor.from_json(_strip(old))

    def untag(self, ref_name: str) -> bool:
        """Remove the tag `name:tag` (its image stays, without a name if it has no other tag);
        False when it was not there."""
        with self._lock():
            entries = self._read()
            old = next((e for e in entries if _names(e, ref_name)), None)
            if old is None:
                return False
            kept = self._keep_orphan([e for e in entries if not _names(e, ref_name)], old)
            self._write(self._sorted(kept))
        return True

    def forget(self, digest: Digest) -> tuple[str, ...]:
        """Drop an image from the index, tags and all (its blobs stay for gc); its tags."""
        with self._lock():
            entries = self._read()
            gone = [e for e in entries if e.get("digest") == str(digest)]
            if gone:
                self._write([e for e in entries if e.get("digest") != str(digest)])
        return tuple(n for n in map(_ref_name, gone) if n)

    @staticmethod
    def _keep_orphan(entries: list[dict[str, Any]], old: dict[str, Any]) -> list[dict[str, Any]]:
        """`entries`, plus an entry without a name for `old`'s image if none is left for it."""
        if any(e.get("digest") == old.get("digest") for e in entries):
            return entries
        return [*entries, _strip(old)]

    @staticmethod
    def _sorted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images without a name first (in the order they came), then tags by name."""
        return sorted(entries, key=lambda e: _ref_name(e) or "")

    # -- finding ---------------------------------------------------------------------------------

    def resolve(self, text: str) -> tuple[str, Descriptor]:
        """Find an image by `name[:tag]`, `name@digest`, an ID or digest (or a unique prefix of
        one); the name it goes by (its first tag for an ID) and its manifest; ImageNotFound else."""
        found = self.find(text)
        if found.tag is not None:
            return found.tag, found.descriptor
        if "@" in text:
            return str(Reference.parse(text)), found.descriptor
        names = [name for name, desc in self.tags() if desc.digest == found.descriptor.digest]
        return (names[0] if names else str(found.descriptor.digest)), found.descriptor

    def find(self, text: str) -> Found:
        """Find an image as `resolve` does; say which tag the text named, if it named one."""
        try:
            ref = Reference.parse(text)
        except Exception:
            ref = None
        if ref is not None and ref.digest is None:
            for name, desc in self.tags():
                if same_image_name(name, ref.ref_name):
                    return Found(desc, name)
        if ref is not None and ref.digest is not None:
            found = self._manifest_descriptor(ref.digest)
            if found is not None:
                return Found(found)
        by_id = self._find_id(text.removeprefix("sha256:"))
        if by_id is not None:
            return Found(by_id)
        untagged = self._find_manifest(text)
        if untagged is not None:
            return Found(untagged)
        raise ImageNotFound(f"image not found: {text}",
                            hint="`minibuild images -a` lists the images in the store")

    def config_digest(self, manifest: Descriptor) -> Digest:
        """An image's ID: the digest of its config."""
        return Manifest.from_json(self.blobs.read_json(manifest.digest)).config.digest

    def _find_manifest(self, text: str) -> Descriptor | None:
        """Any stored image manifest named by its full digest (`sha256:<hex>` or `<hex>`)."""
        try:
            digest = Digest.parse(text if text.startswith("sha256:") else f"sha256:{text}")
        except Exception:
            return None
        return self._manifest_descriptor(digest)

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

    def _find_id(self, prefix: str) -> Descriptor | None:
        """The one image whose ID (config digest) or manifest digest starts with `prefix`."""
        if len(prefix) < MIN_ID_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            return None
        matches = {}
        for image in self.images():
            desc = image.descriptor
            if desc.digest.hex.startswith(prefix) or self.config_digest(desc).hex.startswith(prefix):
                matches[desc.digest] = desc
        if len(matches) > 1:
            raise ImageNotFound(f"image ID prefix {prefix!r} is ambiguous: it matches "
                                f"{len(matches)} images", hint="give more digits of the ID")
        return next(iter(matches.values()), None)

    # -- the file --------------------------------------------------------------------------------

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


def _strip(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its annotations."""
    return {k: v for k, v in entry.items() if k != "annotations"}
