"""The build cache: step key -> the layer (or no layer) and history that step produced.

A key chains the previous step's key with everything that decides the step's result (the
instruction after expansion, ARGs in scope, SHELL, env, user, workdir, and for COPY/ADD the
content hash of exactly the selected files). One JSON file per key under ROOT/cache/steps/,
written only after the layer it names is complete in the store, and atomically: a killed build
never leaves a key pointing at a missing or partial layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from minibuild.store import entries as entry_dir
from minibuild.store.paths import StorePaths
from minibuild.oci.digest import Digest
from minibuild.errors import MinibuildError
from minibuild.oci.image import Descriptor, History, Layer, canonical_json

if TYPE_CHECKING:
    from minibuild.build.ports import BuildStore


@dataclass(frozen=True)
class CacheEntry:
    """What a step produced: its layer (None for no filesystem change) and history entry."""

    layer: Layer | None
    history: History

    def to_json(self) -> dict[str, Any]:
        """The entry as stored."""
        layer = None
        if self.layer is not None:
            layer = {"descriptor": self.layer.descriptor.to_json(), "diff_id": str(self.layer.diff_id)}
        return {"layer": layer, "history": self.history.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheEntry:
        """Read a stored entry."""
        layer = data.get("layer")
        return cls(
            layer=None if layer is None else Layer(Descriptor.from_json(layer["descriptor"]),
                                                  Digest.parse(layer["diff_id"])),
            history=History.from_json(data["history"]),
        )


def step_key(parent: str, step: dict[str, Any]) -> str:
    """The key of a step: sha256 of its parent's key and its canonical description."""
    return Digest.of(canonical_json({"parent": parent, "step": step})).hex


class Cache:
    """The step cache of one store."""

    def __init__(self, store: BuildStore) -> None:
        self.store = store
        paths = StorePaths.at(store.root)
        self.dir: Path = paths.step_cache
        self.copies: Path = paths.copy_hints

    def entry_path(self, key: str) -> Path:
        """The file of a key's entry (whether or not it exists)."""
        return self.dir / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        """The entry for a key, if present and its blob is still in the store."""
        try:
            entry = CacheEntry.from_json(json.loads(self.entry_path(key).read_text()))
        except (OSError, ValueError, KeyError):
            return None
        if entry.layer is not None and not self.store.has_blob(entry.layer.descriptor.digest):
            return None
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        """Record a step's result (call only once its layer is stored)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # No fsync: the layer it names is durable already, and a damaged entry reads as a miss.
        self.store.write_file_atomic(self.entry_path(key), canonical_json(entry.to_json()),
                                     durable=False)

    def put_copy(self, shape: str, diff_id: Digest) -> None:
        """Remember the layer a COPY of this shape made last (a hint for reuse.py: the files
        are compared before any is reused)."""
        self.copies.mkdir(parents=True, exist_ok=True)
        self.store.write_file_atomic(self.copies / f"{shape}.json",
                                     canonical_json({"diff_id": str(diff_id)}), durable=False)

    def get_copy(self, shape: str) -> Path | None:
        """The layer dir a COPY of this shape made last, if it is still in the store."""
        try:
            data = json.loads((self.copies / f"{shape}.json").read_text())
            path = self.store.layer_path(Digest.parse(data["diff_id"]))
        except (OSError, ValueError, KeyError, TypeError, MinibuildError):
            return None
        return path if path.is_dir() else None

    def drop_copies(self) -> int:
        """Forget every COPY reuse hint (with the rest of the cache); how many there were."""
        return entry_dir.empty(self.copies)

    def entries(self) -> Iterator[tuple[str, CacheEntry | None]]:
        """Every (key, entry) on disk; entry None when the file does not parse."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            try:
                yield path.stem, CacheEntry.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError):
                yield path.stem, None

    def remove(self, key: str) -> None:
        """Forget one key."""
        self.entry_path(key).unlink(missing_ok=True)
