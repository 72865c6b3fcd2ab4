"""The engine's collaborators as small interfaces: what the build calls on a runner (the
sandbox), on the store (blobs, unpacked layers, images) and on a step cache, and where it reports.

Written against the methods the engine, the steps and the step cache call today, so a fake in a
unit test implements exactly these and nothing more (as ggcr's `v1.Layer` and containerd's
`content.Store` are small). `sandbox.Sandbox` and `store.layout.Store` satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

if TYPE_CHECKING:  # types only: ports import nothing at run time
    from minibuild.build.cache import CacheEntry
    from minibuild.oci.digest import Digest
    from minibuild.oci.image import Descriptor, Image, Layer
    from minibuild.sandbox.sandbox import Process, RootFS
    from minibuild.sandbox.stepmounts import StepMount


class Runner(Protocol):
    """Runs a step's work on a mounted root (the sandbox: overlay, namespaces, chroot)."""

    def run(self, rootfs: RootFS, process: Process, on_output: Callable[[bytes], None], *,
            mounts: Sequence[StepMount] = ()) -> int:
        """Run a process (RUN) in the root, streaming its output; its exit status."""

    def call(self, rootfs: RootFS, fn: Callable[[], None], *, cwd: Path | None = None,
             source: RootFS | None = None, pre_chroot: Callable[[], None] | None = None) -> None:
        """Run fn (COPY, WORKDIR) chrooted in the root after chdir(cwd); re-raise its exception."""


class BlobSink(Protocol):
    """A blob being written: hashed as it comes, stored under its digest on commit."""

    def write(self, data: bytes) -> int:
        """Append bytes."""

    def commit(self) -> tuple[Digest, int]:
        """Store the blob; its digest and size."""


class BlobStore(Protocol):
    """The content-addressed blobs the engine writes layers into and the step cache checks."""

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is stored."""

    def blob_writer(self) -> AbstractContextManager[BlobSink]:
        """A writer that leaves nothing behind unless commit() is reached."""


class LayerStore(Protocol):
    """Unpacked layer dirs: the overlay lowers of every step."""

    def layer_path(self, diff_id: Digest) -> Path:
        """Where a layer's dir lives (whether or not it is unpacked)."""

    def ensure_layer(self, layer: Layer) -> Path:
        """A layer's dir, unpacked from its blob first if missing."""

    def adopt_layer(self, diff_id: Digest, directory: Path) -> Path:
        """Make a finished upper dir the layer dir of its DiffID."""

    def save_summary(self, diff_id: Digest, summary: Any, sources: Mapping[Digest, str] | None = None) -> None:
        """Keep a layer's summary (sizes, whiteouts), and the blobs known to hold its tar."""


class ImageStore(Protocol):
    """The images FROM and COPY --from name."""

    def resolve(self, text: str) -> tuple[str, Descriptor]:
        """An image by reference or id: its name and manifest descriptor (ImageNotFound if none)."""

    def load_image(self, manifest_descriptor: Descriptor) -> Image:
        """The image a manifest descriptor points at."""


class BuildStore(BlobStore, LayerStore, ImageStore, Protocol):
    """Everything the engine and its step cache use of the store, plus its root and scratch dirs.

    (A FROM naming a registry hands the store on to transfer.remote.pull_if_missing, which
    needs the whole Store; a fake store only meets it with images already stored.)"""

    root: Path

    def scratch(self, prefix: str) -> Path:
        """A fresh empty dir on the store's filesystem, removed with the session."""

    def write_file_atomic(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Write a small file under the root atomically."""


class StepCache(Protocol):
    """Step key -> what the step produced; and the COPY reuse hints (see cache.py)."""

    def get(self, key: str) -> CacheEntry | None:
        """The entry of a key, if present and usable."""

    def put(self, key: str, entry: CacheEntry) -> None:
        """Record a step's result (once its layer is stored)."""

    def get_copy(self, shape: str) -> Path | None:
        """The layer dir a COPY of this shape made last, if still stored."""

    def put_copy(self, shape: str, diff_id: Digest) -> None:
        """Remember the layer a COPY of this shape made."""


class Reporter(Protocol):
    """Where the engine reports progress; the CLI renders it (rich or plain lines)."""

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts."""

    def output(self, data: bytes) -> None:
        """Output of the running step, as it comes."""

    def done(self, seconds: float, note: str) -> None:
        """The step ended (note: CACHED, the layer's size, "no changes")."""

    def phase(self, text: str) -> None:
        """A phase inside a step (snapshot, squash)."""
