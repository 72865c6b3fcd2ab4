"""docker-archive quirks: `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`, layers base first).

Old `docker save` puts each layer at `<id>/layer.tar` (duplicates as symlinks) and the config at
`<hex>.json`; Docker 25+ writes an OCI layout plus `manifest.json` pointing into `blobs/sha256/`.
Layers there are usually plain tars; some tools gzip or zstd them, so the type is sniffed.
`save --format docker` writes the Docker 25+ shape with gzip layers (stored gzip blobs go in as
they are, zstd ones are converted) or, when asked, plain ones: docker (20.10 too), podman and
skopeo read both, and none of them reads zstd there.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from minibuild.fs.files import remove_tree
from minibuild.oci.digest import Digest
from minibuild.errors import ReferenceError_
from minibuild.layer import compression
from minibuild.layer.compression import Compression
from minibuild.oci.image import REF_NAME_ANNOTATION, Descriptor, Layer, Manifest, canonical_json
from minibuild.oci.mediatypes import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.staging import Staging
from minibuild.store.layout import Store
from minibuild.transfer import oci_archive
from minibuild.transfer.archivetar import ArchiveError, Members, TarOut, add_blob
from minibuild.transfer.conversion import convert_layer, needs_conversion
from minibuild.transfer.oci_archive import CONTAINERD_NAME_ANNOTATION, familiar, index_json



def images(members: Members, staging: Staging) -> list[tuple[Descriptor, tuple[Reference, ...]]]:
    """The images manifest.json lists, each as a manifest descriptor plus its RepoTags."""
    entries = members.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError("archive entry 'manifest.json' is not a list of images")
    known = _oci_manifests(members, staging)
    out = []
    for n, entry in enumerate(entries):
        what = f"archive entry 'manifest.json' image {n}"
        if not _well_formed(entry):
            raise ArchiveError(f"{what} is malformed (want Config: a path, Layers: a list of "
                               "paths, RepoTags: a list of names)")
        config = members.blob(entry["Config"], what)
        layers = [members.blob(path, what) for path in entry.get("Layers") or []]
        desc = known.get((config, tuple(layers))) or _synthesize(staging, config, layers)
        out.append((desc, tuple(_tags(entry.get("RepoTags") or [], what))))
    return out


def _well_formed(entry: object) -> bool:
    """Whether a manifest.json entry has the shape docker writes (Layers and RepoTags may be null)."""
    def strings(value: object) -> bool:
        return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    return (isinstance(entry, dict) and isinstance(entry.get("Config"), str)
            and strings(entry.get("Layers")) and strings(entry.get("RepoTags")))


def _oci_manifests(members: Members, staging: Staging) -> dict[tuple[Digest, tuple[Digest, ...]], Descriptor]:
    """Docker 25+ also ships the OCI manifests: reuse them (same digest) when they match."""
    if "index.json" not in members.metadata:
        return {}
    out = {}
    for desc, _ in oci_archive.images(members, staging):
        manifest = staging.manifest(desc.digest)
        out[(manifest.config.digest, tuple(l.digest for l in manifest.layers))] = desc
    return out


def _synthesize(staging: Staging, config: Digest, layers: list[Digest]) -> Descriptor:
    """An OCI manifest for an image that came with no manifest of its own."""
    config_desc = Descriptor(CONFIG_MEDIA_TYPE, config, _size(staging, config))
    layer_descs = tuple(Descriptor(_media_type(staging, d), d, _size(staging, d)) for d in layers)
    data = canonical_json(Manifest(config_desc, layer_descs).to_json())
    return Descriptor(MANIFEST_MEDIA_TYPE, staging.stage_bytes(data, "manifest"), len(data))


def _size(staging: Staging, digest: Digest) -> int:
    with staging.open(digest) as f:
        return f.seek(0, 2)


def _media_type(staging: Staging, digest: Digest) -> str:
    with staging.open(digest) as f:
        head = f.read(4)
    return compression.stored_media_type(head)


def _tags(texts: list, what: str) -> list[Reference]:
    out = []
    for text in texts:
        try:
            out.append(Reference.parse(familiar(str(text))))
        except ReferenceError_ as exc:
            raise ArchiveError(f"{what}: bad RepoTag: {exc.message}") from None
    return out


# -- writing ---------------------------------------------------------------------------------


def save(store: Store, images_: list[tuple[str | None, Descriptor]], out: BinaryIO,
         layer_compression: Compression = Compression.GZIP) -> None:
    """Write a docker archive (Docker 25+ shape), layers in `layer_compression` (gzip or none)."""
    if layer_compression is Compression.ZSTD:
        raise ArchiveError("a docker archive cannot hold zstd layers (docker and podman refuse them)")
    tar = TarOut(out)
    tar.add_bytes("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    entries: dict[Digest, dict] = {}
    index: list[dict] = []
    scratch = store.scratch("save")
    try:
        for name, desc in images_:
            manifest, config, layers = _write_image(tar, store, desc, layer_compression, scratch)
            entry = entries.setdefault(manifest.digest, {
                "Config": f"blobs/sha256/{config.hex}", "RepoTags": [],
                "Layers": [f"blobs/sha256/{d.hex}" for d in layers]})
            if name is None:  # named by ID: no tag, as `docker save ID` writes it
                index.append(Descriptor(MANIFEST_MEDIA_TYPE, manifest.digest, manifest.size).to_json())
                continue
            entry["RepoTags"].append(name)
            tag = Reference.parse(name).tag or "latest"
            index.append(Descriptor(MANIFEST_MEDIA_TYPE, manifest.digest, manifest.size, (
                (CONTAINERD_NAME_ANNOTATION, name), (REF_NAME_ANNOTATION, tag))).to_json())
    finally:
        remove_tree(scratch)
    tar.add_bytes("index.json", index_json(index))
    tar.add_bytes("manifest.json", canonical_json(list(entries.values())))
    tar.close()


def _write_image(tar: TarOut, store: Store, desc: Descriptor, wanted: Compression,
                 scratch: Path) -> tuple[Descriptor, Digest, list[Digest]]:
    """Add an image's layers (in `wanted` compression), config and manifest to the archive: the
    stored manifest when no layer changed, else a matching new one."""
    image = store.load_image(desc)
    config = Manifest.from_json(store.read_json(desc.digest)).config
    layers = [_add_layer(tar, store, layer, wanted, scratch) for layer in image.layers]
    add_blob(tar, store, config.digest)
    if all(new == layer.descriptor for new, layer in zip(layers, image.layers)):
        add_blob(tar, store, desc.digest)
        return Descriptor(desc.media_type, desc.digest, desc.size), config.digest, [l.digest for l in layers]
    data = canonical_json(Manifest(config, tuple(layers)).to_json())
    manifest = Descriptor(MANIFEST_MEDIA_TYPE, Digest.of(data), len(data))
    tar.add_bytes(f"blobs/sha256/{manifest.digest.hex}", data)
    return manifest, config.digest, [l.digest for l in layers]


def _add_layer(tar: TarOut, store: Store, layer: Layer, wanted: Compression, scratch: Path) -> Descriptor:
    """Add one layer: its stored blob when already in `wanted`, else a converted copy (a tar
    header needs the size first, hence the scratch file), checked against its DiffID."""
    if not needs_conversion(layer, wanted):
        add_blob(tar, store, layer.descriptor.digest)
        return layer.descriptor
    converted, path = convert_layer(store, layer, wanted, scratch)
    with open(path, "rb") as f:
        tar.add_file(f"blobs/sha256/{converted.digest.hex}", f, converted.size)
    path.unlink()
    return converted
