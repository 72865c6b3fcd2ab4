"""Store integrity: re-hash every blob, follow every reference, find what nothing needs.

A finding is an *error* (a corrupt or missing blob, a tag whose image is incomplete, an
unreadable summary or cache entry) or *garbage* (intact but unreferenced blobs and layer dirs,
temp files of a killed writer). Garbage is what an interrupted build normally leaves: it makes
the store bigger, not wrong, so only errors make `fsck` fail. `repair` removes the garbage and
the corrupt entries that no valid image needs; it never touches a tag.

`deep=True` also reads every layer blob and compares it with its unpacked dir (deepcheck.py): a
dir that differs is an error, and `repair` removes it (it is unpacked again when next needed).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Protocol

from minibuild.layer.deepcheck import Comparison, compare_layer
from minibuild.oci.digest import Digest
from minibuild.errors import LayerError
from minibuild.oci.image import (CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPES, Config, Descriptor, Layer,
                             Manifest)
from minibuild.maintenance.reachability import Reachable
from minibuild.fs.files import remove_tree
from minibuild.store.layers import LAYER_ID_LEN
from minibuild.store.layout import Store

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LAYER_ID = re.compile(rf"^[0-9a-f]{{{LAYER_ID_LEN}}}$")
_BUFSIZE = 1 << 20


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
class _Scan:
    """Mutable state of one check: the blobs on disk and the findings so far."""

    store: Store
    good_blobs: dict[Digest, int] = field(default_factory=dict)  # digest -> size on disk
    findings: list[Finding] = field(default_factory=list)
    layers: dict[str, Layer] = field(default_factory=dict)  # layer dir name -> a layer naming it
    # layer dir name -> running containers mounting it: repair must not pull it from under them
    running: dict[str, list[str]] = field(default_factory=dict)

    def error(self, where: str, message: str, path: Path | None = None) -> None:
        """Record an error."""
        self.findings.append(Finding(Severity.ERROR, where, message, path, _size(path)))

    def garbage(self, where: str, message: str, path: Path) -> None:
        """Record something only taking space."""
        self.findings.append(Finding(Severity.GARBAGE, where, message, path, _size(path)))

    def layer(self, layer: Layer) -> None:
        """A layer some root names whose blob is intact: its dir can be deep-checked."""
        if layer.descriptor.digest in self.good_blobs:
            self.layers.setdefault(self.store.layer_path(layer.diff_id).name, layer)


class DeepProgress(Protocol):
    """What the deep check tells as it goes (the CLI prints it on stderr)."""

    def begin(self, index: int, total: int, layer: Layer) -> None:
        """Layer `index` of `total` (from 1) starts."""

    def end(self, comparison: Comparison | None) -> None:
        """It is done (None: it could not be compared; the finding says why)."""


def check(store: Store, *, deep: bool = False, progress: DeepProgress | None = None) -> Report:
    """Check the whole store; read-only. `deep` compares every layer dir with its blob."""
    scan = _Scan(store)
    _scan_blobs(scan)
    tags = _check_tags(scan)
    cache_layers, cache_count = _check_cache(scan)
    keep, complete = _roots(scan, cache_layers)
    _unreferenced_blobs(scan, keep, complete)
    layer_dirs = _check_layer_dirs(scan, keep, complete)
    _check_meta(scan, keep, complete)
    _leftover_temps(scan)
    deep_layers, deep_bytes = None, 0
    if deep:
        for layer in cache_layers:
            scan.layer(layer)
        _container_layers(scan)
        deep_layers, deep_bytes = _deep_check(scan, progress)
    return Report(tuple(scan.findings), len(scan.good_blobs), tags, layer_dirs, cache_count,
                  complete, deep_layers, deep_bytes)


def recheck(store: Store, before: Report) -> Report:
    """The store after `repair`: the cheap checks again, and the deep findings whose path is
    still there (the deep pass is not repeated: what it did not report is unchanged)."""
    report = check(store)
    if before.deep_layers is None:
        return report
    standing = tuple(f for f in before.findings
                     if f.deep and (f.path is None or f.path.exists()))
    return replace(report, findings=report.findings + standing,
                   deep_layers=before.deep_layers, deep_bytes=before.deep_bytes)


def _roots(scan: _Scan, cache_layers: list[Layer]) -> tuple[Reachable, bool]:
    """What the tags and the cache keep alive, and whether every root could be read."""
    if any(f.where == "index.json" for f in scan.findings):
        return Reachable(), False  # no idea what is needed: judge nothing unreferenced
    from minibuild.maintenance.gc import roots

    keep = roots(scan.store)  # tags, containers (tagged or not) and cache entries
    keep.diff_ids.update(layer.diff_id for layer in cache_layers)
    return keep, not keep.problems


def repair(store: Store, report: Report) -> list[Finding]:
    """Delete every finding's path (the caller holds the store exclusively); what was removed."""
    from minibuild.build.cache import Cache

    removed = []
    for finding in report.findings:
        path = finding.path
        if path is None or not (path.exists() or path.is_symlink()):
            continue
        if path.parent == Cache(store).dir:
            Cache(store).remove(path.stem)
        elif path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink()
        removed.append(finding)
    return removed


# -- blobs -------------------------------------------------------------------------------------


def _scan_blobs(scan: _Scan) -> None:
    """Re-hash every file under blobs/sha256; a wrong name or wrong bytes is an error."""
    for path in sorted(scan.store.paths.blobs.iterdir()):
        name = path.name
        if not _HEX64.match(name) or not path.is_file():
            scan.garbage(f"blobs/sha256/{name}", "not a blob (stray file)", path)
            continue
        actual, size = _hash_file(path)
        if actual != name:
            scan.error(f"blob sha256:{name}", f"corrupt: its bytes hash to sha256:{actual}", path)
        else:
            scan.good_blobs[Digest(name)] = size


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex and size of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_BUFSIZE):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_blob(scan: _Scan, where: str, descriptor: Descriptor) -> bool:
    """Whether a descriptor's blob is present, intact and of the stated size."""
    size = scan.good_blobs.get(descriptor.digest)
    if size is None:
        path = scan.store.blob_path(descriptor.digest)
        state = "corrupt" if path.exists() else "missing"
        scan.error(where, f"{state} blob {descriptor.digest}")
        return False
    if size != descriptor.size:
        scan.error(where, f"blob {descriptor.digest} has {size} bytes, the descriptor says "
                          f"{descriptor.size}")
        return False
    return True


# -- tags, manifests, configs, layers ---------------------------------------------------------


def _check_tags(scan: _Scan) -> int:
    """Follow every tag to its manifest, config and layers; the number of tags."""
    try:
        tags = scan.store.tags()
    except Exception as exc:  # noqa: BLE001 - an unreadable index is a finding, not a crash
        scan.error("index.json", f"unreadable: {exc}")
        return 0
    for name, descriptor in tags:
        _check_image(scan, f"tag {name}", descriptor)
    return len(tags)


def _check_image(scan: _Scan, where: str, descriptor: Descriptor) -> None:
    """A manifest, its config and its layers: present, intact, consistent."""
    if not _check_blob(scan, where, descriptor):
        return
    try:
        manifest = Manifest.from_json(json.loads(scan.store.blob_path(descriptor.digest).read_bytes()))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same finding
        scan.error(where, f"manifest {descriptor.digest} does not parse: {_why(exc)}")
        return
    if not _check_blob(scan, f"{where}: config", manifest.config):
        return
    try:
        config = Config.from_json(json.loads(scan.store.blob_path(manifest.config.digest).read_bytes()))
    except Exception as exc:  # noqa: BLE001
        scan.error(where, f"config {manifest.config.digest} does not parse: {_why(exc)}")
        return
    _check_config(scan, where, manifest, config)
    for index, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids)):
        _check_layer(scan, f"{where}: layer {index}", Layer(layer, diff_id))


def _check_config(scan: _Scan, where: str, manifest: Manifest, config: Config) -> None:
    """Counts that must agree: layers, DiffIDs and non-empty history entries."""
    if manifest.config.media_type != CONFIG_MEDIA_TYPE:
        scan.error(where, f"config media type {manifest.config.media_type!r} is not {CONFIG_MEDIA_TYPE}")
    if len(manifest.layers) != len(config.diff_ids):
        scan.error(where, f"{len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids")
    made = sum(1 for h in config.history if not h.empty_layer)
    if config.history and made != len(config.diff_ids):
        scan.error(where, f"{made} non-empty history entries but {len(config.diff_ids)} diff_ids")


def _check_layer(scan: _Scan, where: str, layer: Layer) -> None:
    """A layer's blob, and its unpacked dir when there is one (else it is unpacked on use)."""
    if layer.descriptor.media_type not in LAYER_MEDIA_TYPES:
        scan.error(where, f"unknown layer media type {layer.descriptor.media_type!r}")
    if _check_blob(scan, where, layer.descriptor):
        scan.layer(layer)
    path = scan.store.layer_path(layer.diff_id)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        scan.error(where, f"unpacked layer {path} is not a directory", path)


def _check_cache(scan: _Scan) -> tuple[list[Layer], int]:
    """Cache entries that do not parse or name a missing blob; the layers the valid ones keep."""
    from minibuild.build.cache import Cache

    cache = Cache(scan.store)
    if not cache.dir.is_dir():
        return [], 0
    layers, count = [], 0
    for key, entry in cache.entries():
        count += 1
        path = cache.dir / f"{key}.json"
        if entry is None:
            scan.error(f"cache entry {key}", "does not parse", path)
        elif entry.layer is not None:
            if entry.layer.descriptor.digest in scan.good_blobs:
                layers.append(entry.layer)
            else:
                scan.error(f"cache entry {key}", f"names missing or corrupt blob "
                                                 f"{entry.layer.descriptor.digest}", path)
    return layers, count


# -- layer dirs against their blobs (deep) -----------------------------------------------------

_SHOWN = 5  # differing paths listed per layer dir


def _container_layers(scan: _Scan) -> None:
    """The layers of containers' images (tagged or not): their dirs are in use too."""
    from minibuild.containers.records import Containers

    containers = Containers(scan.store.root)
    for container in containers.all():
        try:
            image = scan.store.load_image(container.manifest)
        except Exception:  # noqa: BLE001 - an unreadable image: its dirs are judged by nothing
            continue
        running = containers.status(container) == "running"
        for layer in image.layers:
            scan.layer(layer)
            if running:
                name = scan.store.layer_path(layer.diff_id).name
                scan.running.setdefault(name, []).append(container.name)


def _deep_check(scan: _Scan, progress: DeepProgress | None) -> tuple[int, int]:
    """Compare every layer dir some root names with its intact blob; (dirs compared, bytes read).

    Dirs no root names are garbage already; a needed dir whose blob is missing or corrupt is
    reported by the blob checks (there is nothing to compare it with).
    """
    dirs = [path for path in sorted(scan.store.paths.layers.iterdir())
            if path.name in scan.layers and path.is_dir() and not path.is_symlink()]
    total_bytes = 0
    for index, path in enumerate(dirs, 1):
        layer = scan.layers[path.name]
        if progress is not None:
            progress.begin(index, len(dirs), layer)
        comparison = _compare(scan, layer, path)
        if progress is not None:
            progress.end(comparison)
        if comparison is not None:
            total_bytes += comparison.content_bytes
    return len(dirs), total_bytes


def _compare(scan: _Scan, layer: Layer, path: Path) -> Comparison | None:
    """One layer dir against its blob; findings for what differs."""
    where = f"layer {layer.diff_id}"
    digest = layer.descriptor.digest
    try:
        with open(scan.store.blob_path(digest), "rb", buffering=_BUFSIZE) as blob:
            comparison = compare_layer(blob, layer.descriptor.media_type, path, limit=_SHOWN)
    except LayerError as exc:
        scan.findings.append(Finding(Severity.ERROR, where, f"blob {digest} is not a layer unpack "
                                     f"accepts ({exc.message}), so layers/{path.name} cannot "
                                     "have come from it", deep=True))
        return None
    except OSError as exc:  # an I/O error is worth a finding, not a crash; nothing is removed
        scan.findings.append(Finding(Severity.ERROR, where, f"cannot compare layers/{path.name} "
                                     f"with blob {digest}: {exc}", deep=True))
        return None
    if comparison.diff_id != layer.diff_id:
        scan.findings.append(Finding(Severity.ERROR, where, f"blob {digest} holds the tar of "
                                     f"{comparison.diff_id}, not of this DiffID", deep=True))
    if not comparison.ok:
        details = tuple(d.line() for d in comparison.differences)
        if comparison.count > len(details):
            details += (f"... and {comparison.count - len(details)} more",)
        message = (f"unpacked dir layers/{path.name} differs from its blob in {comparison.count} "
                   "path(s)")
        removable: Path | None = path
        users = scan.running.get(path.name)
        if users:  # a running container's overlay has it as a lower dir: removing it would
            # empty the container's files as it runs, and the container would not see a new one
            message += (f"; not removed: running container(s) {', '.join(sorted(users))} use it "
                        "(stop them, then repair)")
            removable = None
        scan.findings.append(Finding(Severity.ERROR, where, message, removable,
                                     _size(removable), details, deep=True))
    return comparison


# -- what nothing references --------------------------------------------------------------------


def _unreferenced_blobs(scan: _Scan, keep: Reachable, complete: bool) -> None:
    """Intact blobs no tag or cache entry needs (only judged when every root was read)."""
    if not complete:
        return
    for digest in sorted(scan.good_blobs):
        if digest not in keep.blobs:
            scan.garbage(f"blob {digest}", "unreferenced", scan.store.blob_path(digest))


def _check_layer_dirs(scan: _Scan, keep: Reachable, complete: bool) -> int:
    """Dirs under layers/: stray names, and (when every root was read) unreferenced ones."""
    needed = {scan.store.layer_path(d).name for d in keep.diff_ids}
    count = 0
    for path in sorted(scan.store.paths.layers.iterdir()):
        count += 1
        if not _LAYER_ID.match(path.name):
            scan.garbage(f"layers/{path.name}", "not a layer dir (stray entry)", path)
        elif path.name not in needed and complete:
            scan.garbage(f"layers/{path.name}", "unpacked layer no image or cache entry uses", path)
    return count


def _check_meta(scan: _Scan, keep: Reachable, complete: bool) -> None:
    """Layer summaries: each must parse (else it is recomputed after repair deletes it)."""
    from minibuild.layer.snapshot import LayerSummary

    needed = {d.hex for d in keep.diff_ids}
    for path in sorted(scan.store.paths.meta.iterdir()):
        if path.name.startswith("."):
            continue  # a temp file: _leftover_temps
        stem = path.name.removesuffix(".json")
        if not _HEX64.match(stem) or not path.name.endswith(".json"):
            scan.garbage(f"meta/{path.name}", "not a layer summary (stray file)", path)
            continue
        try:
            LayerSummary.from_json(json.loads(path.read_text()))
        except Exception as exc:  # noqa: BLE001
            scan.error(f"meta/{path.name}", f"summary does not parse ({_why(exc)}); "
                                            "--repair deletes it and it is recomputed", path)
            continue
        if stem not in needed and complete:
            scan.garbage(f"meta/{path.name}", "summary of a layer nothing uses", path)


def _leftover_temps(scan: _Scan) -> None:
    """Temp files of atomic writes (`.NAME.PID.RANDOM`) a killed process left behind."""
    store = scan.store
    for directory in _temp_dirs(store):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") and path.is_file() and not _is_lock(path):
                scan.garbage(f"{path.relative_to(store.root)}", "temp file of an interrupted write",
                             path)


def _temp_dirs(store: Store) -> Iterable[Path]:
    """Where write_file_atomic puts temp files."""
    from minibuild.build.cache import Cache

    return (store.paths.oci, store.paths.meta, Cache(store).dir)


def _is_lock(path: Path) -> bool:
    return path.name == ".lock"


def _size(path: Path | None) -> int:
    """Bytes a file or tree takes (0 when gone or unreadable)."""
    if path is None:
        return 0
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        total = 0
        for base, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(base, name)).st_size
                except OSError:
                    pass
        return total
    except OSError:
        return 0


def _why(exc: Exception) -> str:
    """A short reason for a parse failure."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
