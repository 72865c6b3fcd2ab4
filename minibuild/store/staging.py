"""Staging: blobs and images taken in from outside (load, pull, import) are held in scratch,
checked, then committed to the store at once, so a refused input leaves the store unchanged.

This is the one gate for outside input. Every staged blob is hashed while it is written and
compared with the digest it claims. Outside JSON (indexes, descriptors, manifests, configs) has
its shape checked here, so the inside only meets well-formed values; an image must keep the
rules fsck holds the store to (imagerules, and every size that of its blob). Every layer is
read as a tar, new ones unpacked into scratch (which refuses climbing names, writes through
symlinks, hardlinks out of the layer, bad whiteouts and fields the kernel cannot take), and its
DiffID compared with the image config: a blob already in the store too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from minibuild.errors import LayerError, MinibuildError, ReferenceError_
from minibuild.fs.files import remove_tree
from minibuild.oci.digest import Digest
from minibuild.oci.image import Config, Descriptor, Image, Layer, Manifest
from minibuild.oci.mediatypes import DOCKER_TO_OCI_LAYER, INDEX_MEDIA_TYPES
from minibuild.store import imagerules
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
        self._trees: dict[Digest, tuple[Path | None, Any]] = {}  # DiffID -> (scratch tree, summary)
        self._sources: dict[Digest, dict[Digest, str]] = {}  # DiffID -> {blob: media type} read
        self._verified: set[tuple[Digest, str, Digest]] = set()  # (blob, format, DiffID) seen

    def has(self, digest: Digest) -> bool:
        """Whether the blob is staged or already stored."""
        return digest in self._writers or self.blobs.has_blob(digest)

    def size(self, digest: Digest) -> int:
        """The size of a staged or stored blob."""
        writer = self._writers.get(digest)
        if writer is not None:
            return writer.size
        try:
            return self.blobs.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise IntakeError(f"blob {digest} is missing") from None

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

    def manifest(self, digest: Digest) -> Manifest:
        """A staged or stored image manifest, its shape checked (`manifest_of`)."""
        what = f"manifest {digest}"
        return manifest_of(self.read_json(digest, what), what)

    def check_image(self, descriptor: Descriptor) -> StagedImage:
        """Check a staged image the way fsck will: manifest and config well formed and agreeing
        (imagerules), every descriptor's size that of its blob, every layer a tar unpack accepts
        whose DiffID is the one the config claims (stored layers too)."""
        what = f"manifest {descriptor.digest}"
        manifest = self.manifest(descriptor.digest)
        config_what = f"config {manifest.config.digest}"
        config = config_of(self.read_json(manifest.config.digest, config_what), config_what)
        problems = imagerules.config_problems(manifest, config)
        problems += [p for d in manifest.layers if (p := imagerules.layer_type_problem(d.media_type))]
        if problems:
            raise IntakeError(f"{what}: {problems[0]}")
        for blob in (descriptor, manifest.config, *manifest.layers):
            if self.size(blob.digest) != blob.size:
                raise IntakeError(f"{what}: blob {blob.digest} has {self.size(blob.digest)} bytes, "
                                  f"its descriptor says {blob.size}")
        layers = tuple(Layer(d, i) for d, i in zip(manifest.layers, config.diff_ids))
        for layer in layers:
            self.check_layer(layer)
        return StagedImage(descriptor, Image(config=config, layers=layers), manifest.config.digest)

    def check_layer(self, layer: Layer) -> None:
        """A layer's blob must be a tar unpack accepts with the DiffID its image claims. A stored
        blob is checked too (read through, unless the store recorded that it was, see
        `LayerDirs.verified`): else an image could name a stored blob under another DiffID."""
        if _claim(layer.descriptor, layer.diff_id) in self._verified:
            return
        if layer.descriptor.digest not in self._writers and self.layers.verified(layer):
            return
        diff_id = self.take_layer(layer.descriptor, known=layer.diff_id)
        if diff_id != layer.diff_id:
            raise IntakeError(f"layer {layer.descriptor.digest} unpacks to DiffID {diff_id}, "
                              f"but the image config says {layer.diff_id}")

    def take_layer(self, descriptor: Descriptor, known: Digest | None = None) -> Digest:
        """Unpack a staged or stored layer into scratch (refusing unsafe entries); its DiffID.

        When the DiffID `known` is already unpacked (in the store or here), the blob is only read
        through.
        """
        from minibuild.layer import unpack

        work = self.scratch("intake")
        tree: Path | None = work / "tree"
        unpacked = known is not None and (known in self._trees or self.layers.layer_path(known).exists())
        try:
            with self.open(descriptor.digest) as blob:
                if unpacked:
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
        self._keep(diff_id, tree, summary)
        self._verified.add(_claim(descriptor, diff_id))
        self._sources.setdefault(diff_id, {})[descriptor.digest] = descriptor.media_type
        return diff_id

    def _keep(self, diff_id: Digest, tree: Path | None, summary: Any) -> None:
        """Hold a checked layer for commit: one tree per DiffID (a second is dropped at once)."""
        held = self._trees.get(diff_id)
        if held is not None and held[0] is not None:
            if tree is not None:
                remove_tree(tree.parent)
            return
        self._trees[diff_id] = (tree, summary)

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
            sources = {d: m for d, m in self._sources.get(diff_id, {}).items() if d in needed}
            self.layers.save_summary(diff_id, summary, sources)
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


def _claim(descriptor: Descriptor, diff_id: Digest) -> tuple[Digest, str, Digest]:
    """A blob read as a format, and the DiffID it gave: docker's and OCI's names are one format."""
    return descriptor.digest, DOCKER_TO_OCI_LAYER.get(descriptor.media_type, descriptor.media_type), diff_id


def parse_json(data: bytes, what: str) -> Any:
    """JSON from outside, with the entry named when it does not parse."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeError(f"{what} is not valid JSON: {exc}") from None


# -- the shapes of outside JSON: checked here, so the inside only meets well-formed values ------


def _string_map(value: Any) -> bool:
    """Whether a JSON value is absent or an object of strings (annotations, labels)."""
    return value is None or (isinstance(value, dict)
                             and all(isinstance(v, str) for v in value.values()))


def descriptor(data: Any, what: str) -> Descriptor:
    """An outside descriptor with every field checked: a media type, a digest, a size that is a
    whole number of bytes, annotations that are strings and a platform that is an object."""
    if not isinstance(data, dict):
        raise IntakeError(f"{what} is not a descriptor (a JSON object)")
    media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise IntakeError(f"{what}: mediaType {media_type!r} is not a media type")
    if not isinstance(digest, str):
        raise IntakeError(f"{what}: digest {digest!r} is not a digest")
    if type(size) is not int or size < 0:  # bool is an int; 1.0 and -5 are not sizes either
        raise IntakeError(f"{what}: size {size!r} is not a whole number of bytes")
    if not _string_map(data.get("annotations")):
        raise IntakeError(f"{what}: annotations are not an object of strings")
    platform = data.get("platform")
    if platform is not None and not (isinstance(platform, dict) and all(
            isinstance(platform.get(key, ""), str) for key in ("os", "architecture", "variant"))):
        raise IntakeError(f"{what}: platform {platform!r} is not a platform object")
    try:
        return Descriptor.from_json(data)
    except ReferenceError_ as exc:
        raise IntakeError(f"{what}: {exc.message}") from None


def manifest_of(data: Any, what: str) -> Manifest:
    """An outside image manifest, its config and layer descriptors checked."""
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise IntakeError(f"{what} is not an image manifest (schemaVersion 2)")
    layers = data.get("layers") or []
    if not isinstance(layers, list):
        raise IntakeError(f"{what}: layers is not a list")
    if not _string_map(data.get("annotations")):
        raise IntakeError(f"{what}: annotations are not an object of strings")
    return Manifest(config=descriptor(data.get("config"), f"{what}: config"),
                    layers=tuple(descriptor(d, f"{what}: layer {n}") for n, d in enumerate(layers)),
                    annotations=tuple(sorted((data.get("annotations") or {}).items())))


_CONFIG_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_CONFIG_OBJECTS = ("Labels", "ExposedPorts", "Volumes", "Healthcheck")
_CONFIG_STRINGS = ("User", "WorkingDir", "StopSignal")


def _config_shape(data: Any) -> str | None:
    """What in an image config is not of the spec's type, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    rootfs, container, history = data.get("rootfs") or {}, data.get("config") or {}, data.get("history") or []
    if not isinstance(rootfs, dict) or not _strings(rootfs.get("diff_ids")):
        return "rootfs.diff_ids is not a list of digests"
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "history is not a list of objects"
    if not isinstance(container, dict):
        return "config is not an object"
    bad = [k for k in _CONFIG_LISTS if not _strings(container.get(k))]
    bad += [k for k in _CONFIG_OBJECTS if not isinstance(container.get(k, {}), (dict, type(None)))]
    bad += [k for k in _CONFIG_STRINGS if not isinstance(container.get(k, ""), (str, type(None)))]
    return f"config.{bad[0]} is not of its type" if bad else None


def _strings(value: Any) -> bool:
    """Whether a JSON value is absent or a list of strings."""
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def config_of(data: Any, what: str) -> Config:
    """An outside image config; whatever does not have the spec's type is refused."""
    problem = _config_shape(data)
    try:
        if problem is None:
            return Config.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError, ReferenceError_) as exc:
        problem = str(exc)
    raise IntakeError(f"{what} is malformed: {problem}")


def index_entries(index: Any, what: str) -> list[Descriptor]:
    """The descriptors an outside image index lists, each checked."""
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise IntakeError(f"{what} is not an image index (no list of manifests)")
    return [descriptor(entry, f"{what}: manifest {n}") for n, entry in enumerate(entries)]


def choose_platform(index: Any, what: str) -> Descriptor:
    """The entry of an image index for this host (linux, this architecture)."""
    from minibuild.oci.image import host_architecture

    arch = host_architecture()
    entries = index_entries(index, what)  # every entry and its platform checked
    platforms = [entry.get("platform") or {} for entry in index["manifests"]]
    for entry, platform in zip(entries, platforms):
        if platform.get("os", "linux") == "linux" and platform.get("architecture", arch) == arch:
            return entry
    found = sorted({f"{p.get('os')}/{p.get('architecture')}" for p in platforms})
    raise IntakeError(f"{what} has no image for linux/{arch} (it has {', '.join(found) or 'none'})")


def pick_manifest(staging: Staging, desc: Descriptor, depth: int = 0) -> Descriptor:
    """The image manifest a staged descriptor leads to: indexes resolved to this platform."""
    if desc.media_type not in INDEX_MEDIA_TYPES:
        return desc
    if depth > 4:
        raise IntakeError(f"index {desc.digest} nests image indexes too deeply")
    what = f"index {desc.digest}"
    chosen = choose_platform(staging.read_json(desc.digest, what), what)
    return pick_manifest(staging, chosen, depth + 1)
