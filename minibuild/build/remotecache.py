"""The step cache with a registry behind it (`--cache-from`, `--cache-to`): a local miss asks the
registry cache, and every step the build used or made is noted for the export that follows a
successful build. The registry side (tags, pulls, checks) is transfer/registrycache.py."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from minibuild.build.cache import CacheEntry
from minibuild.build.ports import StepCache
from minibuild.oci.digest import Digest
from minibuild.oci.image import History, Image, Layer


class StepSource(Protocol):
    """Where steps the local cache lacks may be found (a registry cache)."""

    def fetch(self, key: str) -> tuple[Layer | None, History] | None:
        """The step's layer and history, checked and in the store; None when not there."""


class RemoteCache:
    """A StepCache over the local one: misses go to `source`; hits and new steps are noted."""

    def __init__(self, inner: StepCache, source: StepSource | None) -> None:
        self.inner = inner
        self.source = source
        self.imported: list[str] = []
        self.seen: dict[str, CacheEntry] = {}  # key -> entry, in build order

    def get(self, key: str) -> CacheEntry | None:
        """The local entry, else the registry's (kept locally from then on)."""
        entry = self.inner.get(key)
        if entry is None and self.source is not None:
            fetched = self.source.fetch(key)
            if fetched is not None:
                entry = CacheEntry(*fetched)
                self.inner.put(key, entry)
                self.imported.append(key)
        if entry is not None:
            self.seen[key] = entry
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        """Record a step's result locally, and note it for the export."""
        self.inner.put(key, entry)
        self.seen[key] = entry

    def get_copy(self, shape: str) -> Path | None:
        """A COPY reuse hint (local only)."""
        return self.inner.get_copy(shape)

    def put_copy(self, shape: str, diff_id: Digest) -> None:
        """Remember a COPY reuse hint (local only)."""
        self.inner.put_copy(shape, diff_id)

    def exportable(self, image: Image, mode: str) -> list[tuple[str, Layer | None, History]]:
        """The steps to export: every one the build used (`max`), or those of the final image
        only (`min`: its history holds their entries)."""
        wanted = set(image.config.history) if mode == "min" else None
        return [(key, entry.layer, entry.history) for key, entry in self.seen.items()
                if wanted is None or entry.history in wanted]
