"""Unpacked layers: ROOT/layers/<id>/, one overlay lowerdir per DiffID, shared by every image
and container that has the layer; and ROOT/meta/<hex>.json, each layer's summary (file sizes,
whiteouts) for history and accounting.

A layer dir appears whole, by rename from scratch: from a step's upper dir (`adopt_layer`) or
unpacked from its blob with its DiffID checked (`ensure_layer`).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Callable

from minibuild.errors import StoreError
from minibuild.fs.files import remove_tree, write_atomic
from minibuild.oci.digest import Digest
from minibuild.oci.image import Layer
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
        self.save_summary(diff_id, summary)
        path = self.adopt_layer(diff_id, tree)
        remove_tree(work)
        return path

    def summary_path(self, diff_id: Digest) -> Path:
        """Where a layer's summary is kept."""
        return self.meta / f"{diff_id.hex}.json"

    def save_summary(self, diff_id: Digest, summary: Any) -> None:
        """Keep a layer's summary (file sizes, whiteouts) for history and accounting."""
        # ASCII JSON: a file name that is not UTF-8 (kept as surrogates) round-trips as \udcXX.
        data = json.dumps(summary.to_json(), sort_keys=True, separators=(",", ":")).encode()
        write_atomic(self.summary_path(diff_id), data, durable=False)

    def layer_summary(self, layer: Layer) -> Any:
        """A layer's summary, computed from its blob if it was never saved or is unreadable."""
        from minibuild.layer import snapshot, unpack

        try:
            return snapshot.LayerSummary.from_json(json.loads(self.summary_path(layer.diff_id).read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass  # never saved, or damaged (summaries are written without fsync)
        with open(self.blobs.blob_path(layer.descriptor.digest), "rb", buffering=_BUFSIZE) as blob:
            _, summary = unpack.summarize_layer(blob, layer.descriptor.media_type)
        self.save_summary(layer.diff_id, summary)
        return summary
