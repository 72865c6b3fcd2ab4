"""The OCI image layout in a tar: what `save` writes by default (`skopeo copy oci-archive:` reads
it), and what `load` reads from an archive with an `index.json` and no docker `manifest.json`.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

from minibuild.errors import ReferenceError_
from minibuild.oci.digest import Digest
from minibuild.oci.image import REF_NAME_ANNOTATION, Descriptor, Manifest, canonical_json
from minibuild.oci.mediatypes import INDEX_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from minibuild.store.staging import Staging, index_entries, pick_manifest
from minibuild.transfer.archivetar import Members, TarOut, add_blob

CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


def images(members: Members, staging: Staging) -> list[tuple[Descriptor, tuple[Reference, ...]]]:
    """The images an OCI layout's index.json names (nested indexes resolved to this platform)."""
    out = []
    for desc in index_entries(members.json("index.json"), "archive entry 'index.json'"):
        members.blob(f"blobs/sha256/{desc.digest.hex}", "archive entry 'index.json'")
        tag = oci_tag(desc)
        out.append((pick_manifest(staging, desc), (tag,) if tag is not None else ()))
    return out


def familiar(text: str) -> str:
    """Docker Hub names as docker shows them: `docker.io/library/app:1` → `app:1`."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def oci_tag(desc: Descriptor) -> Reference | None:
    """The tag an index entry carries: containerd's full name, else the OCI ref name."""
    for key in (CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION):
        text = desc.annotation(key)
        if text and ":" in text.rsplit("/", 1)[-1]:
            try:
                return Reference.parse(familiar(text))
            except ReferenceError_:
                continue
    return None


def save(store: Store, images: list[tuple[str | None, Descriptor]], out: BinaryIO) -> None:
    """Write the images as an OCI image layout tar (`skopeo copy oci-archive:` reads it); an
    image named by ID or digest (name None) goes without a ref name, as docker saves it."""
    tar = TarOut(out)
    tar.add_bytes("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    for d in ("blobs", "blobs/sha256"):
        tar.add_dir(d)
    entries = []
    for name, desc in images:
        for digest in _image_blobs(store, desc):
            add_blob(tar, store, digest)
        annotations = ((REF_NAME_ANNOTATION, name),) if name else ()
        entries.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations).to_json())
    tar.add_bytes("index.json", index_json(entries))
    tar.close()


def index_json(entries: list[dict]) -> bytes:
    """An OCI image index holding these descriptors."""
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


def _image_blobs(store: Store, desc: Descriptor) -> Iterator[Digest]:
    """Every blob of an image, layers first, manifest last."""
    image = store.load_image(desc)
    for layer in image.layers:
        yield layer.descriptor.digest
    yield Manifest.from_json(store.read_json(desc.digest)).config.digest
    yield desc.digest
