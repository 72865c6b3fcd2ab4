"""Unpacked layers: ROOT/layers/<id>/, one overlay lowerdir per DiffID, shared by every image
and container that has the layer; and ROOT/meta/<hex>.json, each layer's summary (file sizes,
whiteouts) for history and accounting.

A layer dir appears whole, by rename from scratch: from a step's upper dir (`adopt_layer`) or
unpacked from its blob with its DiffID checked (`ensure_layer`).

A summary also records the blobs (with their media types) whose tar was seen to have its
DiffID: a snapshot's own blob, or a blob read through and hashed. Staging and fsck trust that
record instead of decompressing a stored blob again (`verified`); nothing else writes meta/.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from minibuild.errors import StoreError
from minibuild.fs.files import remove_tree, write_atomic
from minibuild.oci.digest import Digest
from minibuild.oci.image import Layer
from minibuild.oci.mediatypes import DOCKER_TO_OCI_LAYER
from minibuild.store.paths import StorePaths
from minibuild.store.ports import BlobStore

LAYER_ID_LEN = 16  # short dir names keep overlay's lowerdir option small
_BUFSIZE = 1 << 20


class LayerDirs:
    """The unpacked layers and layer summaries of one store; work dirs come from `scratch`."""

    def __init__(self, paths: StorePaths, blobs: BlobStore, scratch: Callable[[str], Path]) -> None:
        self.dir = paths.layers
        self.meta = paths.meta
        self.blobs = blobs
        self.scratch = scratch

    def layer_path(self, diff_id: Digest) -> Path:
        """The lowerdir of a layer (whether or not it is unpacked yet)."""
        return self.dir / diff_id.hex[:LAYER_ID_LEN]

    def adopt_layer(self, diff_id: Digest, directory: Path) -> Path:
        """Make a finished upper dir the shared lowerdir of its DiffID (atomic rename)."""
        target = self.layer_path(diff_id)
        if target.exists():
            remove_tree(directory)
            return target
        try:
            os.rename(directory, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            remove_tree(directory)  # another process adopted the same layer first
        return target

    def ensure_layer(self, layer: Layer) -> Path:
        """The lowerdir of a layer, unpacked from its blob first if missing (DiffID checked)."""
        from minibuild.layer import unpack  # zstandard and the tar code: only when unpacking

        target = self.layer_path(layer.diff_id)
        if target.exists():
            return target
        work = self.scratch("unpack")
        tree = work / "tree"
        tree.mkdir(mode=0o755)
        os.chmod(tree, 0o755)  # the layer root's mode must not depend on the caller's umask
        with open(self.blobs.blob_path(layer.descriptor.digest), "rb", buffering=_BUFSIZE) as blob:
            diff_id, summary = unpack.unpack_layer(blob, layer.descriptor.media_type, tree)
        if diff_id != layer.diff_id:
            remove_tree(work)
            raise StoreError(f"layer {layer.descriptor.digest} unpacks to DiffID {diff_id}, "
                             f"but the image says {layer.diff_id}")
        self.save_summary(diff_id, summary, {layer.descriptor.digest: layer.descriptor.media_type})
        path = self.adopt_layer(diff_id, tree)
        remove_tree(work)
        return path

    def summary_path(self, diff_id: Digest) -> Path:
        """Where a layer's summary is kept."""
        return self.meta / f"{diff_id.hex}.json"

    def save_summary(self, diff_id: Digest, summary: Any,
                     sources: Mapping[Digest, str] | None = None) -> None:
        """Keep a layer's summary (file sizes, whiteouts) for history and accounting, with the
        blobs (digest -> media type) seen to hold its tar, added to those recorded before."""
        known = self._sources(diff_id)
        known.update({str(digest): media_type for digest, media_type in (sources or {}).items()})
        data = summary.to_json()
        if known:
            data["blobs"] = known
        self._write_summary(diff_id, data)

    def _write_summary(self, diff_id: Digest, data: dict[str, Any]) -> None:
        # ASCII JSON: a file name that is not UTF-8 (kept as surrogates) round-trips as \udcXX.
        write_atomic(self.summary_path(diff_id), json.dumps(data, sort_keys=True, separators=(",", ":")).encode(),
                     durable=False)

    def _read_summary(self, diff_id: Digest) -> dict[str, Any] | None:
        """A summary file as JSON; None when it is missing or damaged."""
        try:
            data = json.loads(self.summary_path(diff_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _sources(self, diff_id: Digest) -> dict[str, str]:
        """The blobs (digest text -> media type) recorded as holding a layer's tar."""
        blobs = (self._read_summary(diff_id) or {}).get("blobs")
        return {k: v for k, v in blobs.items() if isinstance(v, str)} if isinstance(blobs, dict) else {}

    def verified(self, layer: Layer) -> bool:
        """Whether the store has seen this blob, read as this media type, give this DiffID."""
        recorded = self._sources(layer.diff_id).get(str(layer.descriptor.digest))
        return recorded is not None and _same_format(recorded, layer.descriptor.media_type)

    def note_verified(self, layer: Layer) -> None:
        """Record a layer checked by reading its blob through, in its summary when that is
        readable (a missing or damaged summary is left for `layer_summary` to recompute)."""
        data = self._read_summary(layer.diff_id)
        if data is None or self.verified(layer):
            return
        data["blobs"] = {**self._sources(layer.diff_id), str(layer.descriptor.digest): layer.descriptor.media_type}
        self._write_summary(layer.diff_id, data)

    def read_through(self, layer: Layer) -> tuple[Digest, Any]:
        """The DiffID and summary of a stored layer blob, read through without unpacking it
        (LayerError when it is not a layer unpack accepts)."""
        from minibuild.layer import unpack

        with open(self.blobs.blob_path(layer.descriptor.digest), "rb", buffering=_BUFSIZE) as blob:
            return unpack.summarize_layer(blob, layer.descriptor.media_type)

    def layer_summary(self, layer: Layer) -> Any:
        """A layer's summary, computed from its blob if it was never saved or is unreadable."""
        from minibuild.layer import snapshot

        try:
            return snapshot.LayerSummary.from_json(json.loads(self.summary_path(layer.diff_id).read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass  # never saved, or damaged (summaries are written without fsync)
        diff_id, summary = self.read_through(layer)
        if diff_id != layer.diff_id:
            raise StoreError(f"layer {layer.descriptor.digest} decompresses to DiffID {diff_id}, "
                             f"but the image says {layer.diff_id}: the store is corrupt")
        self.save_summary(layer.diff_id, summary, {layer.descriptor.digest: layer.descriptor.media_type})
        return summary


def _same_format(a: str, b: str) -> bool:
    """Whether two layer media types read the same bytes the same way (docker's and OCI's names)."""
    return DOCKER_TO_OCI_LAYER.get(a, a) == DOCKER_TO_OCI_LAYER.get(b, b)
