"""pull and push: move images between the store and an OCI registry, one layer at a time.

Pull fetches only blobs the store lacks, verifies each against its digest, resolves image
indexes to this host's platform and keeps the registry's manifest bytes (same digest). Push
HEADs each blob first, tries a cross-repository mount from another repository of the same host
the store knows the blob from, and uploads the rest before the manifest; `--compression`
converts layers stored in another compression on the way (the pushed manifest is then new).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from minibuild.oci.digest import Digest
from minibuild.errors import ImageNotFound
from minibuild.layer.compression import Compression
from minibuild.oci.image import Descriptor, Manifest, canonical_json
from minibuild.oci.mediatypes import DOCKER_SCHEMA1_MEDIA_TYPES, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.transfer.conversion import convert_layer, needs_conversion
from minibuild.transfer.registry import Client, RegistryError, Remote, names_registry
from minibuild.store.staging import IntakeError, StagedImage, Staging, choose_platform, parse_json
from minibuild.store.layout import Store

_BLOB_ATTEMPTS = 3


class Progress(Protocol):
    """What a pull or push reports: one bar per blob."""

    def begin(self, key: str, label: str, total: int) -> None:
        """A blob transfer starts."""

    def advance(self, key: str, amount: int) -> None:
        """Bytes moved."""

    def end(self, key: str, note: str) -> None:
        """The blob is done (note: 'done', 'exists', 'mounted', ...)."""


class QuietProgress:
    """Reports nothing."""

    def begin(self, key: str, label: str, total: int) -> None:
        """Ignored."""

    def advance(self, key: str, amount: int) -> None:
        """Ignored."""

    def end(self, key: str, note: str) -> None:
        """Ignored."""


@dataclass(frozen=True)
class PushResult:
    """What a push did: the manifest digest and, per blob, whether it moved."""

    digest: Digest
    uploaded: tuple[Digest, ...]
    skipped: tuple[Digest, ...]
    mounted: tuple[Digest, ...]


# -- pull ------------------------------------------------------------------------------------


def pull(store: Store, text: str, *, insecure: bool = False, progress: Progress | None = None,
         client: Client | None = None) -> Descriptor:
    """Pull `host/repo[:tag|@digest]` into the store, tag it, return the manifest descriptor."""
    remote = Remote.parse(text)
    progress = progress or QuietProgress()
    own = client is None
    client = client or Client(remote.host, insecure=insecure)
    staging = Staging(store)
    try:
        descriptor = _fetch_manifest(client, staging, remote)
        image = _fetch_image(client, staging, remote, descriptor, progress)
        staging.commit([image])
    except BaseException:
        staging.abort()
        raise
    finally:
        if own:
            client.close()
    store.tag(remote.reference, descriptor)
    return descriptor


def _fetch_manifest(client: Client, staging: Staging, remote: Remote) -> Descriptor:
    """The image manifest (through an index when needed), staged with its original bytes."""
    reference, pinned = remote.tag_or_digest, remote.reference.digest
    for _ in range(3):
        data, media_type = client.get_manifest(remote.repository, reference)
        digest = Digest.of(data)
        if pinned is not None and digest != pinned:
            raise IntakeError(f"manifest {remote.repository}@{pinned}: the registry sent bytes "
                              f"hashing to {digest}")
        media_type = _media_type(data, media_type, remote)
        if media_type not in INDEX_MEDIA_TYPES:
            staging.stage_bytes(data, f"manifest {digest}", digest)
            return Descriptor(media_type, digest, len(data))
        chosen = choose_platform(parse_json(data, f"index {digest}"), f"index {remote.repository}@{digest}")
        reference, pinned = str(chosen.digest), chosen.digest
    raise IntakeError(f"{remote.repository}: image indexes nest too deeply")


def _media_type(data: bytes, header: str, remote: Remote) -> str:
    """The manifest's own mediaType field wins over Content-Type; schema 1 is refused."""
    try:
        field = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        raise IntakeError(f"manifest of {remote.repository}:{remote.tag_or_digest} is not JSON") from None
    media_type = field or header or MANIFEST_MEDIA_TYPE
    if media_type in DOCKER_SCHEMA1_MEDIA_TYPES:
        raise RegistryError(f"{remote.repository}:{remote.tag_or_digest} is a docker schema 1 image, "
                            "which minibuild does not read")
    return media_type


def _fetch_image(client: Client, staging: Staging, remote: Remote, descriptor: Descriptor,
                 progress: Progress) -> StagedImage:
    """Fetch the config and every layer the store lacks, then check the image."""
    manifest = staging.manifest(descriptor.digest)
    for blob in (manifest.config, *manifest.layers):
        if staging.has(blob.digest):
            progress.end(blob.digest.short, "exists")
            continue
        _fetch_blob(client, staging, remote.repository, blob, progress)
    return staging.check_image(descriptor)


def _fetch_blob(client: Client, staging: Staging, repository: str, blob: Descriptor,
                progress: Progress) -> None:
    """Download one blob into staging; retried from the start when the connection drops."""
    key = blob.digest.short
    for attempt in range(_BLOB_ATTEMPTS):
        progress.begin(key, f"{key} ", blob.size)
        try:
            with client.blob(repository, blob.digest) as chunks:
                staging.stage(_counted(chunks, key, progress), f"blob {blob.digest} from {repository}",
                              blob.digest, limit=blob.size)
            progress.end(key, "done")
            return
        except httpx.TransportError as exc:  # the connection dropped mid-body: start over
            if attempt == _BLOB_ATTEMPTS - 1:
                raise RegistryError(f"GET blob {blob.digest} from {repository}: {exc}") from None


def _counted(chunks, key: str, progress: Progress):
    for chunk in chunks:
        progress.advance(key, len(chunk))
        yield chunk


def pull_if_missing(store: Store, ref_text: str, progress: Progress | None = None) -> Descriptor:
    """The manifest descriptor of `ref_text` in the store, pulled from its registry when missing."""
    ref = Reference.parse(ref_text)
    for name, desc in store.tags():
        if name == ref.ref_name:
            return desc
    if ref.digest is not None and store.has_blob(ref.digest):
        _, desc = store.resolve(ref_text)
        return desc
    if not names_registry(ref.name):
        raise ImageNotFound(f"image not found: {ref_text}")
    return pull(store, ref_text, progress=progress)


# -- push ------------------------------------------------------------------------------------


def push(store: Store, source: str, destination: str | None = None, *, insecure: bool = False,
         progress: Progress | None = None, client: Client | None = None,
         chunk_size: int | None = 64 << 20, layer_compression: Compression | None = None) -> PushResult:
    """Push a stored image to `destination` (default: its own name, which must name a registry);
    with `layer_compression`, layers stored otherwise are converted on the way (a new manifest)."""
    name, descriptor = store.resolve(source)
    remote = Remote.parse(destination or name)
    progress = progress or QuietProgress()
    own = client is None
    client = client or Client(remote.host, insecure=insecure)
    moved: dict[str, list[Digest]] = {"uploaded": [], "skipped": [], "mounted": []}
    scratch = store.scratch("push")
    try:
        data = store.read_blob(descriptor.digest)
        media_type = json.loads(data).get("mediaType") or descriptor.media_type
        manifest = Manifest.from_json(json.loads(data))
        paths = {blob.digest: store.blob_path(blob.digest) for blob in (*manifest.layers, manifest.config)}
        if layer_compression is not None and _needs_conversion(store, descriptor, layer_compression):
            data, manifest = _converted(store, descriptor, manifest, layer_compression, scratch, paths)
            media_type = MANIFEST_MEDIA_TYPE
        for blob in (*manifest.layers, manifest.config):
            note = _push_blob(store, client, remote, blob, paths[blob.digest], progress, chunk_size)
            moved[note].append(blob.digest)
        digest = client.put_manifest(remote.repository, remote.tag_or_digest, data, media_type)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if own:
            client.close()
    return PushResult(digest, *(tuple(moved[k]) for k in ("uploaded", "skipped", "mounted")))


def _needs_conversion(store: Store, descriptor: Descriptor, wanted: Compression) -> bool:
    return any(needs_conversion(layer, wanted) for layer in store.load_image(descriptor).layers)


def _converted(store: Store, descriptor: Descriptor, manifest: Manifest, wanted: Compression,
               scratch: Path, paths: dict[Digest, Path]) -> tuple[bytes, Manifest]:
    """A new manifest (bytes and value) with every layer in `wanted` compression; converted blobs
    are added to `paths`."""
    layers = []
    for layer in store.load_image(descriptor).layers:
        if not needs_conversion(layer, wanted):
            layers.append(layer.descriptor)
            continue
        converted, path = convert_layer(store, layer, wanted, scratch)
        paths[converted.digest] = path
        layers.append(converted)
    manifest = Manifest(manifest.config, tuple(layers))
    return canonical_json(manifest.to_json()), manifest


def _push_blob(store: Store, client: Client, remote: Remote, blob: Descriptor, path: Path,
               progress: Progress, chunk_size: int | None) -> str:
    """HEAD, then mount, then upload; returns 'skipped', 'mounted' or 'uploaded'."""
    key = blob.digest.short
    if client.has_blob(remote.repository, blob.digest):
        progress.end(key, "exists")
        return "skipped"
    for source in _mount_sources(store, remote, blob.digest):
        if client.mount_blob(remote.repository, blob.digest, source):
            progress.end(key, f"mounted from {source}")
            return "mounted"
    progress.begin(key, f"{key} ", blob.size)
    client.upload_blob(remote.repository, blob.digest, blob.size, lambda: open(path, "rb"),
                       chunk_size, lambda n: progress.advance(key, n))
    progress.end(key, "pushed")
    return "uploaded"


def _mount_sources(store: Store, remote: Remote, digest: Digest) -> list[str]:
    """Other repositories of the same registry whose stored images (by tag) hold this blob."""
    out = []
    for name, desc in store.tags():
        try:
            ref = Reference.parse(name)
        except Exception:
            continue
        host, _, repository = ref.name.partition("/")
        if host != remote.host or repository == remote.repository or repository in out:
            continue
        try:
            manifest = Manifest.from_json(store.read_json(desc.digest))
        except Exception:
            continue
        if digest in (manifest.config.digest, *(l.digest for l in manifest.layers)):
            out.append(repository)
    return out
