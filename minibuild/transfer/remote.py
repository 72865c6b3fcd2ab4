"""pull: an image from a registry (through the mirrors the registries config names) into the
store, one layer at a time; `push` lives in push.py and is re-exported here.

Pull fetches only blobs the store lacks, verifies each against its digest, resolves image
indexes to this host's platform and keeps the registry's manifest bytes (same digest). A short
name (`debian:12`) is tried in each search registry (docker.io by default), each through its
mirrors first; the image is tagged with its familiar name (`debian:12`) whichever place served it.
When every place fails, one error names each one tried and why.
"""

from __future__ import annotations

import json

import httpx

from minibuild.errors import ImageNotFound
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Manifest
from minibuild.oci.mediatypes import DOCKER_SCHEMA1_MEDIA_TYPES, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from minibuild.store.staging import IntakeError, StagedImage, Staging, choose_platform, parse_json
from minibuild.transfer.progress import Progress, QuietProgress
from minibuild.transfer.push import PushResult, push  # noqa: F401 - the module's other half
from minibuild.transfer.registry import Client, RegistryError, Remote
from minibuild.transfer.registryconf import RegistryConfig

_BLOB_ATTEMPTS = 3


# -- pull ------------------------------------------------------------------------------------


def pull(store: Store, text: str, *, insecure: bool = False, progress: Progress | None = None,
         client: Client | None = None, registries: RegistryConfig | None = None) -> Descriptor:
    """Pull `text` (`debian:12`, `host/repo[:tag|@digest]`) into the store, tag it with its
    familiar name, return the manifest descriptor; RegistryError naming every place tried."""
    ref = Reference.parse(text)
    registries = registries or RegistryConfig()
    progress = progress or QuietProgress()
    tried: list[str] = []
    for candidate in registries.candidates(ref):
        if registries.blocked(candidate):
            tried.append(f"{candidate.domain}: blocked by {', '.join(registries.sources)}")
            continue
        for endpoint in registries.pull_endpoints(candidate):
            remote = Remote(endpoint.host, endpoint.repository, candidate)
            try:
                descriptor = pull_untagged(store, remote, endpoint.insecure or insecure, progress, client)
            except RegistryError as exc:
                tried.append(exc.message if exc.message.startswith("cannot reach")
                             else f"{endpoint.label}: {exc.message}")
                continue
            store.tag(candidate, descriptor)
            return descriptor
    raise RegistryError(f"cannot pull {text}: {'; '.join(tried)}")


def pull_untagged(store: Store, remote: Remote, insecure: bool, progress: Progress,
                client: Client | None) -> Descriptor:
    """Fetch the image from one place into the store (untagged); staged blobs go on failure."""
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


def pull_if_missing(store: Store, ref_text: str, progress: Progress | None = None,
                    registries: RegistryConfig | None = None) -> Descriptor:
    """The manifest descriptor of `ref_text` in the store, pulled when missing (a short name from
    the search registries, docker.io by default, as docker does); RegistryError when it cannot be."""
    try:
        return store.resolve(ref_text)[1]
    except ImageNotFound:
        return pull(store, ref_text, progress=progress, registries=registries)
