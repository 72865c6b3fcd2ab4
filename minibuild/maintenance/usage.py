"""`df`: where the store's bytes go (images, containers, volumes, layers, build cache, RUN cache
mounts), like `docker system df`.

Every byte is measured once, the way `du -sb` does (apparent sizes of files, directories and
symlinks; a hard-linked file once): blobs, unpacked layer dirs and container dirs are the
items, and images, layers, containers and cache entries are sets of items. So twenty
containers of one image count the image's layers once, and their own upper dirs each.

This module is the arithmetic (pure): an `Inventory` of items in, the `Usage` figures out.
inventory.py takes the inventory of a store on disk; treesize.py measures the trees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One line of the summary: count, in use, bytes, of them shared/unique, reclaimable."""

    kind: str
    total: int
    active: int
    size: int
    shared: int
    unique: int
    reclaimable: int


@dataclass(frozen=True)
class ImageFigures:
    """One image (a manifest) in `df -v`."""

    names: tuple[str, ...]
    digest: str
    size: int
    shared: int
    unique: int
    containers: int
    image_id: str = ""  # the config digest (docker's IMAGE ID); `digest` is the manifest's


@dataclass(frozen=True)
class LayerFigures:
    """One layer (blob + unpacked dir) in `df -v`."""

    key: str  # DiffID, or the blob digest / dir name when nobody references it
    size: int
    images: int
    containers: int
    cached: bool

    @property
    def referenced(self) -> bool:
        """Whether prune keeps it."""
        return bool(self.images or self.containers or self.cached)


@dataclass(frozen=True)
class ContainerFigures:
    """One container in `df -v`: its own dir (upper, work, log, record)."""

    id: str
    name: str
    image: str
    manifest: str
    size: int
    running: bool


@dataclass(frozen=True)
class VolumeFigures:
    """One volume in `df -v`: its _data dir and how many containers name it."""

    name: str
    size: int
    links: int
    anonymous: bool


@dataclass(frozen=True)
class CacheMountFigures:
    """One RUN --mount=type=cache dir (ROOT/cache/mounts/<id hash>) in `df -v`."""

    dir: str
    size: int
    in_use: bool  # a build holds its lock now


@dataclass(frozen=True)
class Usage:
    """Everything `df` shows."""

    rows: tuple[Row, ...]
    images: tuple[ImageFigures, ...]
    layers: tuple[LayerFigures, ...]
    containers: tuple[ContainerFigures, ...]
    total: int  # bytes of all items: blobs, layer dirs, container dirs, volumes, cache mounts
    volumes: tuple[VolumeFigures, ...] = ()
    cache_mounts: tuple[CacheMountFigures, ...] = ()


def _bytes(items: set[str], sizes: Mapping[str, int]) -> int:
    return sum(sizes.get(i, 0) for i in items)


def _union(sets) -> set[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    return out


@dataclass(frozen=True)
class Inventory:
    """The store as sets of items: input of `account`, built from disk by `inventory`."""

    sizes: Mapping[str, int]  # item -> bytes (every blob, layer dir)
    images: Mapping[str, frozenset[str]]  # manifest digest -> its items
    names: Mapping[str, tuple[str, ...]]  # manifest digest -> its tags
    layers: Mapping[str, frozenset[str]]  # layer key -> its items (blob, dir)
    cache: Mapping[str, frozenset[str]]  # cache key -> layer items it keeps
    containers: Sequence[ContainerFigures]
    volumes: Sequence[VolumeFigures] = ()
    cache_mounts: Sequence[CacheMountFigures] = ()
    ids: Mapping[str, str] = field(default_factory=dict)  # manifest digest -> image ID


def account(inv: Inventory) -> Usage:
    """The df figures of an inventory."""
    used_images = {c.manifest for c in inv.containers}
    image_items = _union(inv.images.values())
    in_use = _union(inv.images[m] for m in used_images if m in inv.images)
    cache_items = _union(inv.cache.values())
    counts: dict[str, int] = {}
    for items in inv.images.values():
        for item in items:
            counts[item] = counts.get(item, 0) + 1
    shared_items = {i for i, n in counts.items() if n > 1}
    images = tuple(ImageFigures(inv.names.get(m, ()), m, _bytes(set(items), inv.sizes),
                                _bytes(set(items) & shared_items, inv.sizes),
                                _bytes(set(items) - shared_items, inv.sizes),
                                sum(1 for c in inv.containers if c.manifest == m),
                                inv.ids.get(m, ""))
                   for m, items in inv.images.items())
    image_size = _bytes(image_items, inv.sizes)
    image_row = Row("Images", len(inv.images), len(used_images & set(inv.images)), image_size,
                    _bytes(shared_items, inv.sizes), image_size - _bytes(shared_items, inv.sizes),
                    _bytes(image_items - in_use - cache_items, inv.sizes))
    layers = _layer_figures(inv, in_use, cache_items)
    return Usage((image_row, _container_row(inv.containers), _volume_row(inv.volumes),
                  _layer_row(layers), _cache_row(inv, image_items | in_use),
                  _cache_mount_row(inv.cache_mounts)),
                 images, layers, tuple(inv.containers),
                 sum(inv.sizes.values()) + sum(c.size for c in inv.containers)
                 + sum(v.size for v in inv.volumes) + sum(m.size for m in inv.cache_mounts),
                 tuple(inv.volumes), tuple(inv.cache_mounts))


def _layer_figures(inv: Inventory, in_use: set[str], cache_items: set[str]) -> tuple[LayerFigures, ...]:
    out = []
    for key, items in sorted(inv.layers.items()):
        n_images = sum(1 for image in inv.images.values() if items & image)
        n_containers = sum(1 for c in inv.containers if items & inv.images.get(c.manifest, frozenset()))
        out.append(LayerFigures(key, _bytes(set(items), inv.sizes), n_images, n_containers,
                                bool(items & cache_items)))
    return tuple(out)


def _layer_row(layers: Sequence[LayerFigures]) -> Row:
    size = sum(l.size for l in layers)
    shared = sum(l.size for l in layers if l.images > 1)
    return Row("Layers", len(layers), sum(1 for l in layers if l.images or l.containers), size,
               shared, size - shared, sum(l.size for l in layers if not l.referenced))


def _container_row(containers: Sequence[ContainerFigures]) -> Row:
    size = sum(c.size for c in containers)
    return Row("Containers", len(containers), sum(1 for c in containers if c.running), size, 0,
               size, sum(c.size for c in containers if not c.running))


def _volume_row(volumes: Sequence[VolumeFigures]) -> Row:
    """docker's Local Volumes: active = named by a container; the others are reclaimable."""
    size = sum(v.size for v in volumes)
    return Row("Local Volumes", len(volumes), sum(1 for v in volumes if v.links), size, 0, size,
               sum(v.size for v in volumes if not v.links))


def _cache_mount_row(mounts: Sequence[CacheMountFigures]) -> Row:
    """RUN cache mounts: `prune --cache` drops every one no build holds."""
    size = sum(m.size for m in mounts)
    return Row("Cache Mounts", len(mounts), sum(1 for m in mounts if m.in_use), size, 0, size,
               sum(m.size for m in mounts if not m.in_use))


def _cache_row(inv: Inventory, image_items: set[str]) -> Row:
    items = _union(inv.cache.values())
    size = _bytes(items, inv.sizes)
    shared = _bytes(items & image_items, inv.sizes)
    active = sum(1 for v in inv.cache.values() if v & image_items)
    return Row("Build Cache", len(inv.cache), active, size, shared, size - shared, size - shared)
