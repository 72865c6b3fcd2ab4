"""`import`: a plain rootfs tarball (tar, gzip, bzip2, xz or zstd) becomes a one-layer image.

A tarball that already comes in the chosen compression (gzip unless asked otherwise) is stored as
it is; any other (plain, bzip2, xz: OCI has no layer type for the last two) is decompressed and
compressed again. `--change` lines are Buildfile metadata instructions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from minibuild.errors import BuildfileError
from minibuild.layer import compression
from minibuild.oci.image import (Config, ContainerConfig, Descriptor, History, Image, Layer,
                                 canonical_json)
from minibuild.oci.mediatypes import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.staging import StagedImage, Staging
from minibuild.store.layout import Store


def import_rootfs(store: Store, source: BinaryIO, name: str, ref: Reference,
                  changes: tuple[str, ...] = (),
                  layer_compression: compression.Compression = compression.Compression.GZIP) -> Descriptor:
    """Store the tarball as one layer plus a config; tag it `ref`; return the manifest descriptor."""
    container = apply_changes(changes)
    staging = Staging(store)
    try:
        media_type, chunks = _layer_stream(source, layer_compression)
        digest, size = staging.stage(chunks, f"{name}")
        layer = Descriptor(media_type, digest, size)
        diff_id = staging.take_layer(layer)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        history = History(created_by=f"minibuild import {name}", created=now, comment="imported")
        image = Image(config=Config(created=now, config=container)).append(Layer(layer, diff_id), history)
        config_data = image.config_bytes()
        config = Descriptor(CONFIG_MEDIA_TYPE, staging.stage_bytes(config_data, "config"), len(config_data))
        manifest_data = canonical_json(image.manifest(config).to_json())
        manifest = Descriptor(MANIFEST_MEDIA_TYPE, staging.stage_bytes(manifest_data, "manifest"),
                              len(manifest_data))
        staging.commit([StagedImage(manifest, image, config.digest)])
    except BaseException:
        staging.abort()
        raise
    store.tag(ref, manifest)
    return manifest


def _layer_stream(source: BinaryIO, wanted: compression.Compression) -> tuple[str, Iterator[bytes]]:
    """The layer media type and its blob bytes: the tarball as it is when its first bytes show
    the wanted compression, else decompressed and compressed as wanted."""
    kind, reader = compression.sniff_stream(source)
    if (kind or compression.Compression.NONE.value) == wanted.value:
        return wanted.media_type, iter(lambda: reader.read(compression.CHUNK), b"")
    return wanted.media_type, compression.compressed_chunks(compression.decompressing(reader, kind), wanted)


def apply_changes(changes: tuple[str, ...]) -> ContainerConfig:
    """The container config that `--change` instructions (CMD, ENV, WORKDIR, ...) describe."""
    from minibuild.dockerfile import metadata, parser
    from minibuild.dockerfile.instructions import Workdir

    config, scope = ContainerConfig(), metadata.Scope()
    for change in changes:
        parsed = parser.parse(f"FROM scratch\n{change}\n", file="--change")
        for instruction in parsed.instructions[1:]:
            if isinstance(instruction, Workdir):
                config = replace(config, working_dir=metadata.resolve_workdir(config.working_dir,
                                                                              instruction.path))
                continue
            try:
                config, scope, _ = metadata.apply(instruction, config, scope, {}, {})
            except BuildfileError as exc:
                raise BuildfileError(f"--change {change!r}: {exc.message}") from None
    return config
