"""Every path under a store's root, named once; and where the store lives by default.

    ROOT/oci/                 OCI image layout (oci-layout, index.json, blobs/sha256/<hex>)
    ROOT/layers/<id>/         one unpacked layer per DiffID (overlay lowerdir format)
    ROOT/meta/<hex>.json      per-layer summary (file sizes, whiteouts)
    ROOT/run/<session>/       scratch of one live minibuild process
    ROOT/locks/{index,gc}     flock files: index.json updates; the store in use (shared) or
                              held by gc/fsck (exclusive)
    ROOT/cache/steps/         the step cache; cache/copies/ COPY reuse hints; cache/stat/ the
                              context's stat cache; cache/parse/ parsed Buildfiles; cache/memo/
                              build memos; cache/mounts/ RUN --mount=type=cache dirs
    ROOT/containers/<id>/     container records; ROOT/volumes/<name>/ volumes

Only the standard library is imported (and no dataclasses, whose import costs 5 ms): the build
memo reads these paths on every `minibuild` start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

# minibuild.fs.idmap.USERNS_ENV, spelt out: this module imports only the standard library
USERNS_ENV = "MINIBUILD_USERNS"


def default_root() -> Path:
    """`MINIBUILD_ROOT`, else /var/lib/minibuild for root, else (rootless, also inside the
    user namespace where we are uid 0) `$XDG_DATA_HOME/minibuild` or ~/.local/share/minibuild."""
    env = os.environ.get("MINIBUILD_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0 and not os.environ.get(USERNS_ENV):
        return Path("/var/lib/minibuild")
    data = os.environ.get("XDG_DATA_HOME", "")
    if data.startswith("/"):  # the XDG spec: a relative value is invalid, ignore it
        return Path(data) / "minibuild"
    return Path.home() / ".local/share/minibuild"


class StorePaths(NamedTuple):
    """The paths of the store at `root` (a frozen value: nothing is read or made)."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> StorePaths:
        """The paths of the store at `root` (given as any path-like)."""
        return cls(Path(root))

    @property
    def oci(self) -> Path:
        """The OCI image layout."""
        return self.root / "oci"

    @property
    def oci_layout(self) -> Path:
        """The layout's version marker file."""
        return self.oci / "oci-layout"

    @property
    def index(self) -> Path:
        """index.json: the tags."""
        return self.oci / "index.json"

    @property
    def blobs(self) -> Path:
        """The content store: one file per sha256 digest, named by its hex."""
        return self.oci / "blobs" / "sha256"

    @property
    def layers(self) -> Path:
        """The unpacked layer dirs."""
        return self.root / "layers"

    @property
    def meta(self) -> Path:
        """The layer summaries."""
        return self.root / "meta"

    @property
    def run(self) -> Path:
        """The session dirs of live processes."""
        return self.root / "run"

    @property
    def locks(self) -> Path:
        """The store-wide lock files."""
        return self.root / "locks"

    @property
    def gc_lock(self) -> Path:
        """Held shared by every process using the store, exclusive by gc and fsck --repair."""
        return self.locks / "gc"

    @property
    def index_lock(self) -> Path:
        """Held while index.json is rewritten."""
        return self.locks / "index"

    @property
    def cache(self) -> Path:
        """Everything kept for speed only (`prune --cache` empties it)."""
        return self.root / "cache"

    @property
    def step_cache(self) -> Path:
        """The step cache entries."""
        return self.cache / "steps"

    @property
    def copy_hints(self) -> Path:
        """The layer each COPY shape made last (reuse hints)."""
        return self.cache / "copies"

    @property
    def stat_cache(self) -> Path:
        """The stat caches of build contexts."""
        return self.cache / "stat"

    @property
    def parse_cache(self) -> Path:
        """Parsed Buildfiles."""
        return self.cache / "parse"

    @property
    def memo(self) -> Path:
        """Build memos."""
        return self.cache / "memo"

    @property
    def cache_mounts(self) -> Path:
        """RUN --mount=type=cache dirs and their lock files."""
        return self.cache / "mounts"

    @property
    def containers(self) -> Path:
        """Container records."""
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        """Volumes."""
        return self.root / "volumes"
