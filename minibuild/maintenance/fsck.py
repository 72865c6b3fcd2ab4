"""Store integrity: re-hash every blob, follow every reference, find what nothing needs.

A finding is an *error* (a corrupt or missing blob, a tag whose image is incomplete, an
unreadable summary or cache entry) or *garbage* (intact but unreferenced blobs and layer dirs,
temp files of a killed writer). Garbage is what an interrupted build normally leaves: it makes
the store bigger, not wrong, so only errors make `fsck` fail. `repair` removes the garbage and
the corrupt entries that no valid image needs; it never touches a tag.

Every layer's blob must hold the tar of the DiffID its config claims (diffids.py: read through
once, then trusted from the store's record). `deep=True` trusts no record, and reads every layer
blob and compares it with its unpacked dir (layerdirs.py): a dir that differs is an error, and
`repair` removes it (it is unpacked again when next needed).
The findings and the report are in findings.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from minibuild.maintenance.diffids import check_diff_ids
from minibuild.maintenance.findings import Finding, Report, Scan
from minibuild.maintenance.layerdirs import DeepProgress, container_layers, deep_check
from minibuild.maintenance.reachability import Reachable
from minibuild.oci.digest import Digest
from minibuild.oci.image import Config, Descriptor, Layer, Manifest
from minibuild.fs.files import remove_tree
from minibuild.store import imagerules
from minibuild.store.layers import LAYER_ID_LEN
from minibuild.store.layout import Store

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LAYER_ID = re.compile(rf"^[0-9a-f]{{{LAYER_ID_LEN}}}$")
_BUFSIZE = 1 << 20


def check(store: Store, *, deep: bool = False, progress: DeepProgress | None = None) -> Report:
    """Check the whole store; read-only. `deep` compares every layer dir with its blob."""
    scan = Scan(store)
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
        container_layers(scan)
        deep_layers, deep_bytes = deep_check(scan, progress)
    check_diff_ids(scan, deep=deep)
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


def _roots(scan: Scan, cache_layers: list[Layer]) -> tuple[Reachable, bool]:
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


def _scan_blobs(scan: Scan) -> None:
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


def _check_blob(scan: Scan, where: str, descriptor: Descriptor) -> bool:
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


def _check_tags(scan: Scan) -> int:
    """Follow every tag (and every image kept without one) to its manifest, config and
    layers; the number of tags."""
    try:
        entries = scan.store.index.entries()
    except Exception as exc:  # noqa: BLE001 - an unreadable index is a finding, not a crash
        scan.error("index.json", f"unreadable: {exc}")
        return 0
    for name, descriptor in entries:
        _check_image(scan, f"tag {name}" if name else f"image {descriptor.digest}", descriptor)
    return sum(1 for name, _ in entries if name)


def _check_image(scan: Scan, where: str, descriptor: Descriptor) -> None:
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


def _check_config(scan: Scan, where: str, manifest: Manifest, config: Config) -> None:
    """The config's media type, and counts that must agree: layers, DiffIDs and non-empty
    history entries (the rules staging holds every incoming image to)."""
    for problem in imagerules.config_problems(manifest, config):
        scan.error(where, problem)


def _check_layer(scan: Scan, where: str, layer: Layer) -> None:
    """A layer's blob, and its unpacked dir when there is one (else it is unpacked on use)."""
    problem = imagerules.layer_type_problem(layer.descriptor.media_type)
    if problem is not None:
        scan.error(where, problem)
    if _check_blob(scan, where, layer.descriptor):
        scan.layer(layer, where)
    path = scan.store.layer_path(layer.diff_id)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        scan.error(where, f"unpacked layer {path} is not a directory", path)


def _check_cache(scan: Scan) -> tuple[list[Layer], int]:
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


# -- what nothing references --------------------------------------------------------------------


def _unreferenced_blobs(scan: Scan, keep: Reachable, complete: bool) -> None:
    """Intact blobs no tag or cache entry needs (only judged when every root was read)."""
    if not complete:
        return
    for digest in sorted(scan.good_blobs):
        if digest not in keep.blobs:
            scan.garbage(f"blob {digest}", "unreferenced", scan.store.blob_path(digest))


def _check_layer_dirs(scan: Scan, keep: Reachable, complete: bool) -> int:
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


def _check_meta(scan: Scan, keep: Reachable, complete: bool) -> None:
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


def _leftover_temps(scan: Scan) -> None:
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


def _why(exc: Exception) -> str:
    """A short reason for a parse failure."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
