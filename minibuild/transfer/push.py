"""push: an image of the store to a registry, one blob at a time.

Each blob is HEADed first, then mounted from another repository of the same registry the store
knows it from, and only then uploaded; the manifest goes last. `--compression` converts layers
stored in another compression on the way (the pushed manifest is then new, its config the same).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from minibuild.layer.compression import Compression
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Manifest, canonical_json
from minibuild.oci.mediatypes import MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from minibuild.transfer.conversion import convert_layer, needs_conversion
from minibuild.transfer.progress import Progress, QuietProgress
from minibuild.transfer.registry import Client, Remote
from minibuild.transfer.registryconf import RegistryConfig


@dataclass(frozen=True)
class PushResult:
    """What a push did: the manifest digest and, per blob, whether it moved."""

    digest: Digest
    uploaded: tuple[Digest, ...]
    skipped: tuple[Digest, ...]
    mounted: tuple[Digest, ...]


def push(store: Store, source: str, destination: str | None = None, *, insecure: bool = False,
         progress: Progress | None = None, client: Client | None = None,
         chunk_size: int | None = 64 << 20, layer_compression: Compression | None = None,
         registries: RegistryConfig | None = None) -> PushResult:
    """Push a stored image to `destination` (default: its own name, which must name a registry);
    with `layer_compression`, layers stored otherwise are converted on the way (a new manifest).
    Plain http when asked, for local hosts, or when the registries config says so."""
    name, descriptor = store.resolve(source)
    remote = Remote.parse(destination or name)
    progress = progress or QuietProgress()
    own = client is None
    insecure = insecure or (registries or RegistryConfig()).push_endpoint(remote.reference).insecure
    client = client or Client(remote.host, insecure=insecure)
    moved: dict[str, list[Digest]] = {"uploaded": [], "skipped": [], "mounted": []}
    scratch = store.scratch("push")
    try:
        data = store.read_blob(descriptor.digest)
        media_type = json.loads(data).get("mediaType") or descriptor.media_type
        manifest = Manifest.from_json(json.loads(data))
        paths = {blob.digest: store.blob_path(blob.digest) for blob in (*manifest.layers, manifest.config)}
        _want_scopes(store, client, remote, manifest)
        if layer_compression is not None and _needs_conversion(store, descriptor, layer_compression):
            data, manifest = _converted(store, descriptor, manifest, layer_compression, scratch, paths)
            media_type = MANIFEST_MEDIA_TYPE
        for blob in (*manifest.layers, manifest.config):
            note = push_blob(store, client, remote, blob, paths[blob.digest], progress, chunk_size)
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


def _want_scopes(store: Store, client: Client, remote: Remote, manifest: Manifest) -> None:
    """One token for the whole push: pull,push here and pull on every repository a blob can be
    mounted from (else each kind of request would earn its own 401 and token)."""
    client.want(remote.repository, "pull,push")
    sources = {source for blob in (*manifest.layers, manifest.config)
               for source in _mount_sources(store, remote, blob.digest)}
    for source in sorted(sources):
        client.want(source, "pull")


def push_blob(store: Store, client: Client, remote: Remote, blob: Descriptor, path: Path,
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
        host, repository = ref.domain, ref.path
        if host != remote.host or repository == remote.repository or repository in out:
            continue
        try:
            manifest = Manifest.from_json(store.read_json(desc.digest))
        except Exception:
            continue
        if digest in (manifest.config.digest, *(l.digest for l in manifest.layers)):
            out.append(repository)
    return out
