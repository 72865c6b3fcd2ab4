"""Fakes for the build's ports (minibuild/build/ports.py): a runner that runs no sandbox, a store
kept in a temporary dir and a dict, a reporter that records. No root, no overlay mounts."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from minibuild.build.copier import apply_copy
from minibuild.build.workdir import make_workdir
from minibuild.errors import ImageNotFound
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Ran:
    """One process the fake runner was asked to run."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    user: str | None
    network: str
    lowers: tuple[Path, ...]
    process: object = None  # the whole Process (hostname, secret_env, pipes...)


class FakeRunner:
    """Runs no process: `script(upper, argv)` plays a RUN on the upper dir and gives its exit
    status; COPY and WORKDIR run in-process with the upper dir as their root (the lowers are
    not merged in, which is all a FROM scratch build needs)."""

    def __init__(self, script: Callable[[Path, tuple[str, ...]], int] | None = None) -> None:
        self.script = script or (lambda upper, argv: 0)
        self.ran: list[Ran] = []
        self.calls = 0

    def run(self, rootfs, process, on_output, *, mounts=()) -> int:
        """Record the process, play it, stream one line of output."""
        self.ran.append(Ran(process.argv, dict(process.env), process.cwd, process.user,
                            process.network, rootfs.lowers, process))
        on_output(f"ran {process.argv[-1]}\n".encode())
        return self.script(rootfs.upper, process.argv)

    def call(self, rootfs, fn, *, cwd=None, source=None, pre_chroot=None) -> None:
        """COPY from the context and WORKDIR, rooted at the upper dir instead of a chroot."""
        self.calls += 1
        if isinstance(fn, functools.partial) and fn.func is apply_copy:
            apply_copy(*fn.args, root=str(rootfs.upper), context=str(cwd))
        elif isinstance(fn, functools.partial) and fn.func is make_workdir:
            os.makedirs(rootfs.upper / fn.args[0].lstrip("/"), 0o755, exist_ok=True)
        else:
            raise AssertionError(f"the fake runner cannot chroot to run {fn!r}")


class _Sink:
    """A blob being written to the fake store."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def commit(self) -> tuple[Digest, int]:
        digest = Digest.of(bytes(self.data))
        self.store.blobs[digest] = bytes(self.data)
        return digest, len(self.data)


@dataclass
class FakeStore:
    """A BuildStore in a temporary dir: blobs and images in dicts, layer dirs on disk."""

    root: Path
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    images: dict[str, tuple[Descriptor, Image]] = field(default_factory=dict)
    summaries: dict[Digest, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("layers", "scratch"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def scratch(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root / "scratch"))

    def write_file_atomic(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        path.write_bytes(data)

    def has_blob(self, digest: Digest) -> bool:
        return digest in self.blobs

    @contextmanager
    def blob_writer(self) -> Iterator[_Sink]:
        yield _Sink(self)

    def layer_path(self, diff_id: Digest) -> Path:
        return self.root / "layers" / diff_id.hex[:12]

    def ensure_layer(self, layer: Layer) -> Path:
        path = self.layer_path(layer.diff_id)
        assert path.is_dir(), f"the fake store cannot unpack {layer.diff_id}"
        return path

    def adopt_layer(self, diff_id: Digest, directory: Path) -> Path:
        target = self.layer_path(diff_id)
        if not target.exists():
            os.rename(directory, target)
        return target

    def save_summary(self, diff_id: Digest, summary: object, sources=None) -> None:
        self.summaries[diff_id] = summary

    def resolve(self, text: str) -> tuple[str, Descriptor]:
        if text not in self.images:
            raise ImageNotFound(f"no image {text}")
        return text, self.images[text][0]

    def load_image(self, manifest_descriptor: Descriptor) -> Image:
        return next(image for d, image in self.images.values() if d == manifest_descriptor)

    def add_image(self, name: str, files: dict[str, str]) -> Descriptor:
        """A one-layer image whose layer dir holds `files` (test set-up)."""
        diff_id = Digest.of(repr(sorted(files.items())).encode())
        layer_dir = self.layer_path(diff_id)
        for rel, text in files.items():
            (layer_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (layer_dir / rel).write_text(text)
        blob = Digest.of(b"blob of " + diff_id.hex.encode())
        self.blobs[blob] = b""
        image = Image().append(Layer(Descriptor(LAYER_TYPE, blob, 0), diff_id),
                               History(created_by=f"base {name}", created="2020-01-01T00:00:00Z"))
        manifest = Descriptor("application/vnd.oci.image.manifest.v1+json",
                              Digest.of(hashlib.sha256(name.encode()).digest()), 1)
        self.images[name] = (manifest, image)
        return manifest


class Reporter:
    """Records the progress the engine reports."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.notes: list[str] = []
        self.printed = bytearray()
        self.phases: list[str] = []

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        self.steps.append(f"{number}/{total} {text}")

    def output(self, data: bytes) -> None:
        self.printed += data

    def done(self, seconds: float, note: str) -> None:
        self.notes.append(note)

    def phase(self, text: str) -> None:
        self.phases.append(text)
