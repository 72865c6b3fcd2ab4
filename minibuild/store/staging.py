"""Staging: blobs and images taken in from outside (load, pull, import) are held in scratch,
checked, then committed to the store at once, so a refused input leaves the store unchanged.

Every staged blob is hashed while it is written and compared with the digest it claims; every
new layer is unpacked into scratch (which refuses climbing names, writes through symlinks,
hardlinks out of the layer, bad whiteouts) and its DiffID compared with the image config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from minibuild.oci.digest import Digest
from minibuild.errors import LayerError, MinibuildError
from minibuild.oci.image import Config, Descriptor, Image, Layer, Manifest
from minibuild.oci.mediatypes import INDEX_MEDIA_TYPES
from minibuild.fs.files import remove_tree
from minibuild.store.cas import BlobWriter
from minibuild.store.layout import Store

JSON_LIMIT = 4 << 20  # manifests, configs, index.json: anything bigger is not metadata
_CHUNK = 1 << 20


class IntakeError(MinibuildError):
    """Input from outside (an archive, a registry) is refused: unsafe, corrupt or inconsistent."""


@dataclass(frozen=True)
class StagedImage:
    """An image checked in staging: its manifest descriptor (original bytes kept) and content."""

    descriptor: Descriptor
    image: Image
    config_digest: Digest


class Staging:
    """A set of blobs and unpacked layers waiting in scratch until `commit()`."""

    def __init__(self, store: Store) -> None:
        self.blobs = store.cas
        self.layers = store.layer_dirs
        self.scratch = store.scratch
        self._writers: dict[Digest, BlobWriter] = {}
        self._trees: dict[Digest, tuple[Path, Any]] = {}  # DiffID -> (scratch tree, summary)

    def has(self, digest: Digest) -> bool:
        """Whether the blob is staged or already stored."""
        return digest in self._writers or self.blobs.has_blob(digest)

    def stage(self, chunks: Iterable[bytes], what: str, expected: Digest | None = None,
              limit: int | None = None) -> tuple[Digest, int]:
        """Write a blob from chunks; check its size limit while streaming and its digest at the end."""
        writer = BlobWriter(self.blobs)
        try:
            for chunk in chunks:
                if limit is not None and writer.size + len(chunk) > limit:
                    raise IntakeError(f"{what}: more than the expected {limit} bytes")
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        digest = writer.digest
        if expected is not None and digest != expected:
            writer.abort()
            raise IntakeError(f"{what}: content hashes to {digest}, not {expected}")
        if digest in self._writers or self.blobs.has_blob(digest):
            writer.abort()
        else:
            self._writers[digest] = writer
        return digest, writer.size

    def stage_bytes(self, data: bytes, what: str, expected: Digest | None = None) -> Digest:
        """Stage a small blob held in memory."""
        return self.stage([data], what, expected)[0]

    def open(self, digest: Digest) -> BinaryIO:
        """Read a staged or stored blob."""
        writer = self._writers.get(digest)
        path = writer.staged_path() if writer is not None else self.blobs.blob_path(digest)
        try:
            return open(path, "rb", buffering=_CHUNK)
        except FileNotFoundError:
            raise IntakeError(f"blob {digest} is missing") from None

    def read_json(self, digest: Digest, what: str) -> Any:
        """A staged or stored JSON blob (at most JSON_LIMIT bytes), parsed."""
        with self.open(digest) as f:
            data = f.read(JSON_LIMIT + 1)
        if len(data) > JSON_LIMIT:
            raise IntakeError(f"{what} is too large for JSON metadata (over {JSON_LIMIT} bytes)")
        if Digest.of(data) != digest:
            raise IntakeError(f"{what}: content hashes to {Digest.of(data)}, not {digest}")
        return parse_json(data, what)

    def check_image(self, descriptor: Descriptor) -> StagedImage:
        """Parse a staged manifest and its config; unpack and verify every layer not yet stored."""
        what = f"manifest {descriptor.digest}"
        try:
            manifest = Manifest.from_json(self.read_json(descriptor.digest, what))
            config = Config.from_json(self.read_json(manifest.config.digest, f"config {manifest.config.digest}"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntakeError(f"{what} or its config is malformed: {exc!r}") from None
        if len(config.diff_ids) != len(manifest.layers):
            raise IntakeError(f"{what}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids")
        layers = tuple(Layer(d, i) for d, i in zip(manifest.layers, config.diff_ids))
        for layer in layers:
            if not self.has(layer.descriptor.digest):
                raise IntakeError(f"{what}: layer {layer.descriptor.digest} is missing")
            self.check_layer(layer)
        return StagedImage(descriptor, Image(config=config, layers=layers), manifest.config.digest)

    def check_layer(self, layer: Layer) -> None:
        """A staged layer blob must unpack safely to the DiffID its image claims."""
        if layer.descriptor.digest not in self._writers or layer.diff_id in self._trees:
            return  # a stored blob was checked when it came in
        diff_id = self.take_layer(layer.descriptor, known=layer.diff_id)
        if diff_id != layer.diff_id:
            raise IntakeError(f"layer {layer.descriptor.digest} unpacks to DiffID {diff_id}, "
                              f"but the image config says {layer.diff_id}")

    def take_layer(self, descriptor: Descriptor, known: Digest | None = None) -> Digest:
        """Unpack a staged layer into scratch (refusing unsafe entries); return its DiffID.

        When the DiffID `known` is already unpacked in the store, the blob is only read through.
        """
        from minibuild.layer import unpack

        work = self.scratch("intake")
        tree: Path | None = work / "tree"
        try:
            with self.open(descriptor.digest) as blob:
                if known is not None and self.layers.layer_path(known).exists():
                    tree = None
                    diff_id, summary = unpack.summarize_layer(blob, descriptor.media_type)
                else:
                    tree.mkdir(mode=0o755)
                    os.chmod(tree, 0o755)  # not the caller's umask
                    diff_id, summary = unpack.unpack_layer(blob, descriptor.media_type, tree)
        except LayerError as exc:
            remove_tree(work)
            raise IntakeError(f"layer {descriptor.digest} refused: {exc.message}") from None
        except BaseException:
            remove_tree(work)
            raise
        if tree is None:
            remove_tree(work)
        self._trees[diff_id] = (tree, summary)
        return diff_id

    def commit(self, images: Iterable[StagedImage]) -> None:
        """Move the blobs these images need into the store, then adopt their unpacked layers."""
        needed: set[Digest] = set()
        for staged in images:
            needed.add(staged.descriptor.digest)
            needed.update(layer.descriptor.digest for layer in staged.image.layers)
            needed.add(staged.config_digest)
        for digest, writer in self._writers.items():
            if digest in needed:
                writer.commit()
            else:
                writer.abort()
        self._writers.clear()
        for diff_id, (tree, summary) in self._trees.items():
            self.layers.save_summary(diff_id, summary)
            if tree is not None:
                self.layers.adopt_layer(diff_id, tree)
                remove_tree(tree.parent)
        self._trees.clear()

    def abort(self) -> None:
        """Drop everything staged."""
        for writer in self._writers.values():
            writer.abort()
        self._writers.clear()
        for tree, _ in self._trees.values():
            if tree is not None:
                remove_tree(tree.parent)
        self._trees.clear()


def parse_json(data: bytes, what: str) -> Any:
    """JSON from outside, with the entry named when it does not parse."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeError(f"{what} is not valid JSON: {exc}") from None


def choose_platform(index: Any, what: str) -> dict[str, Any]:
    """The entry of an image index for this host (linux, this architecture), as JSON."""
    from minibuild.oci.image import host_architecture

    arch = host_architecture()
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise IntakeError(f"{what} is not an image index")
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os", "linux") == "linux" and platform.get("architecture", arch) == arch:
            return entry
    found = sorted({f"{(e.get('platform') or {}).get('os')}/{(e.get('platform') or {}).get('architecture')}"
                    for e in entries})
    raise IntakeError(f"{what} has no image for linux/{arch} (it has {', '.join(found) or 'none'})")


def pick_manifest(staging: Staging, desc: Descriptor, depth: int = 0) -> Descriptor:
    """The image manifest a staged descriptor leads to: indexes resolved to this platform."""
    if desc.media_type not in INDEX_MEDIA_TYPES:
        return desc
    if depth > 4:
        raise IntakeError(f"index {desc.digest} nests image indexes too deeply")
    what = f"index {desc.digest}"
    try:
        chosen = Descriptor.from_json(choose_platform(staging.read_json(desc.digest, what), what))
    except (KeyError, TypeError, ValueError) as exc:
        raise IntakeError(f"{what} has a bad descriptor: {exc!r}") from None
    return pick_manifest(staging, chosen, depth + 1)
