"""rmi and prune: delete what no image, container or (unless dropped) cache entry needs.

Every image of the index is a root, tagged or not (docker keeps dangling images until
`image prune`); `collect(dangling=True)` (prune) first drops the untagged ones no container uses.

Runs with the store's `gc` lock exclusive, so no build or other command has the store open:
nothing deleted can be in use by a build. Containers (running or not) are roots through their
records: their image's manifest, config and layers stay, tagged or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from minibuild.build import cachemounts, memo, parsecache
from minibuild.build.cache import Cache
from minibuild.containers.records import Containers
from minibuild.oci.digest import Digest
from minibuild.errors import StoreError
from minibuild.oci.image import Layer
from minibuild.maintenance.reachability import Reachable, reachable
from minibuild.fs.files import remove_tree
from minibuild.store.layers import LAYER_ID_LEN
from minibuild.store.layout import Store
from minibuild.maintenance.treesize import freed_bytes

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Collected:
    """What a collection removed, and the bytes it freed."""

    blobs: tuple[str, ...]  # digests
    layer_dirs: tuple[str, ...]  # dir names under ROOT/layers
    summaries: int
    cache_entries: int
    freed: int
    images: tuple[str, ...] = ()  # IDs of the dangling images dropped (prune)
    untagged: tuple[str, ...] = ()  # the tags those images had (prune -a)


def roots(store: Store, *, with_cache: bool = True) -> Reachable:
    """What the tags, the containers and (with_cache) the cache entries need."""
    containers = Containers(store.root).all()
    layers: list[Layer] = []
    if with_cache:
        layers = [entry.layer for _, entry in Cache(store).entries()
                  if entry is not None and entry.layer is not None]
    keep = reachable(store, manifests=[c.manifest for c in containers], layers=layers)
    for container in containers:  # even if its manifest became unreadable, its dirs stay
        keep.diff_ids.update(container.diff_ids)
    return keep


def drop_dangling(store: Store, *, everything: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Forget the images no tag names (with `everything`: tagged ones too) and no container
    uses; their IDs (config digests) and the tags they had."""
    used = {c.manifest.digest for c in Containers(store.root).all()}
    dropped, untagged = [], []
    for image in store.images():
        if (everything or image.dangling) and image.descriptor.digest not in used:
            try:
                dropped.append(str(store.image_id(image.descriptor)))
            except Exception:  # noqa: BLE001 - an unreadable manifest goes all the same
                dropped.append(str(image.descriptor.digest))
            untagged.extend(store.forget_image(image.descriptor.digest))
    return tuple(dropped), tuple(untagged)


def collect(store: Store, *, drop_cache: bool = False, dangling: bool = False,
            unused: bool = False) -> Collected:
    """Delete unneeded blobs, layer dirs, summaries (and with drop_cache, the cache entries;
    with dangling, first the images no tag names and no container uses; with unused, every
    image no container uses, as `image prune -a`).

    Takes the store's gc lock exclusive (StoreError when another process uses the store) and
    refuses when some root could not be read: a GC that cannot see a root would delete it.
    """
    store.lock_exclusive()
    images, untagged = drop_dangling(store, everything=unused) if dangling or unused else ((), ())
    cache_removed = _drop_cache(store, everything=drop_cache)
    keep = roots(store, with_cache=not drop_cache)
    if keep.problems:
        raise StoreError(f"not collecting: {keep.problems[0]}",
                         hint="`minibuild fsck` tells what is damaged")
    freed = 0
    blobs = []
    for digest, size in _unneeded_blobs(store, keep.blobs):
        store.blob_path(digest).unlink(missing_ok=True)
        blobs.append(str(digest))
        freed += size
    wanted = {d.hex[:LAYER_ID_LEN] for d in keep.diff_ids}
    doomed = [entry for entry in sorted(store.paths.layers.iterdir()) if entry.name not in wanted]
    freed += freed_bytes(doomed)  # a file a kept layer links too (COPY reuse) frees nothing
    dirs = []
    for entry in doomed:
        remove_tree(entry)
        dirs.append(entry.name)
    summaries = _drop_summaries(store, {d.hex for d in keep.diff_ids})
    return Collected(tuple(blobs), tuple(dirs), summaries, cache_removed, freed, images, untagged)


def _unneeded_blobs(store: Store, keep: set[Digest]) -> Iterable[tuple[Digest, int]]:
    """Blobs (by their file name) nobody needs; files with other names are fsck's business."""
    wanted = {d.hex for d in keep}
    for path in sorted(store.paths.blobs.iterdir()):
        if _HEX64.fullmatch(path.name) and path.name not in wanted:
            yield Digest.parse(f"sha256:{path.name}"), path.stat().st_size


def _drop_summaries(store: Store, wanted: set[str]) -> int:
    """Remove ROOT/meta/<hex>.json of layers nobody keeps."""
    removed = 0
    for path in store.paths.meta.glob("*.json"):
        if _HEX64.fullmatch(path.stem) and path.stem not in wanted:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _drop_cache(store: Store, *, everything: bool) -> int:
    """Remove every cache entry (everything), else only unreadable or dangling ones."""
    cache, removed = Cache(store), 0
    for key, entry in list(cache.entries()):
        dangling = entry is None or (entry.layer is not None
                                     and not store.has_blob(entry.layer.descriptor.digest))
        if everything or dangling:
            cache.remove(key)
            removed += 1
    if everything:
        memo.forget_all(store.root)  # a memo promises what the step cache would rebuild
        parsecache.forget_all(store.root)
        cache.drop_copies()
        cachemounts.forget_cache_mounts(store.root)  # RUN --mount=type=cache dirs (no build holds one)
    return removed
