"""What `fsck` finds: errors (the store is wrong) and garbage (it is only bigger), the report of
one check, and the scan state its passes share.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.fs import dirstack
from minibuild.oci.digest import Digest
from minibuild.oci.image import Layer
from minibuild.store.layout import Store


class Severity(enum.Enum):
    """Whether a finding makes the store wrong (error) or only bigger (garbage)."""

    ERROR = "error"
    GARBAGE = "garbage"


@dataclass(frozen=True)
class Finding:
    """One thing fsck found: what, where, and whether `repair` may delete `path`."""

    severity: Severity
    where: str
    message: str
    path: Path | None = None  # what `repair` deletes; None: nothing to delete (e.g. a bad tag)
    size: int = 0
    details: tuple[str, ...] = ()  # one line each (the first differing paths of a layer dir)
    deep: bool = False  # found by the deep check (not repeated after repair)

    def line(self) -> str:
        """`error: WHERE: MESSAGE`, one line."""
        return f"{self.severity.value}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Report:
    """Everything one check found, and what it covered."""

    findings: tuple[Finding, ...]
    blobs: int
    tags: int
    layer_dirs: int
    cache_entries: int
    complete_roots: bool  # every root could be read: unreferenced really means unreferenced
    deep_layers: int | None = None  # layer dirs compared with their blobs; None: no deep check
    deep_bytes: int = 0  # file content bytes the deep check read on each side

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that make the store wrong."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def garbage(self) -> tuple[Finding, ...]:
        """The findings that only take space."""
        return tuple(f for f in self.findings if f.severity is Severity.GARBAGE)

    @property
    def ok(self) -> bool:
        """True when there is no error (garbage is fine)."""
        return not self.errors


@dataclass
class Scan:
    """Mutable state of one check: the blobs on disk and the findings so far."""

    store: Store
    good_blobs: dict[Digest, int] = field(default_factory=dict)  # digest -> size on disk
    findings: list[Finding] = field(default_factory=list)
    layers: dict[str, Layer] = field(default_factory=dict)  # layer dir name -> a layer naming it
    # layer dir name -> running containers mounting it: repair must not pull it from under them
    running: dict[str, list[str]] = field(default_factory=dict)
    claims: dict[Layer, list[str]] = field(default_factory=dict)  # layer -> where it was named
    compared: set[Layer] = field(default_factory=set)  # layers the deep check read against a dir

    def error(self, where: str, message: str, path: Path | None = None) -> None:
        """Record an error."""
        self.findings.append(Finding(Severity.ERROR, where, message, path, size_of(path)))

    def garbage(self, where: str, message: str, path: Path) -> None:
        """Record something only taking space."""
        self.findings.append(Finding(Severity.GARBAGE, where, message, path, size_of(path)))

    def layer(self, layer: Layer, where: str | None = None) -> None:
        """A layer some root names (at `where`) whose blob is intact: its dir can be
        deep-checked, and its DiffID is checked against the blob (diffids.py)."""
        if layer.descriptor.digest in self.good_blobs:
            self.layers.setdefault(self.store.layer_path(layer.diff_id).name, layer)
            wheres = self.claims.setdefault(layer, [])
            if where is not None:
                wheres.append(where)


def size_of(path: Path | None) -> int:
    """Bytes a file or tree takes (0 when gone or unreadable)."""
    if path is None:
        return 0
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(entry.st.st_size for entry in dirstack.walk(path)  # any depth, by fd
                   if not entry.is_dir)
    except OSError:
        return 0
