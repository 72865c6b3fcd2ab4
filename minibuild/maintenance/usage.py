"""`df`: where the store's bytes go (images, containers, volumes, layers, build cache, RUN cache
mounts), like `docker system df`.

Every byte is measured once, the way `du -sb` does (apparent sizes of files, directories and
symlinks; a hard-linked file once): blobs, unpacked layer dirs and container dirs are the
items, and images, layers, containers and cache entries are sets of items. So twenty
containers of one image count the image's layers once, and their own upper dirs each.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from minibuild.build.cache import Cache
from minibuild.containers.records import Containers
from minibuild.oci.image import Layer
from minibuild.build.mountsetup import cache_mount_dir
from minibuild.store.layers import LAYER_ID_LEN
from minibuild.containers.volumes import Volumes, users

_HEX64 = re.compile(r"[0-9a-f]{64}")


def tree_bytes(path: Path) -> int:
    """`du -sb PATH`: apparent bytes of every entry below and including path, hardlinks once."""
    return _walk_bytes(path, {}, None)


def _walk_bytes(path: Path, links: dict[tuple[int, int], list], owner: str | None) -> int:
    """Bytes of a tree without its multi-linked files, which go into `links` instead:
    (dev, ino) -> [size, links seen, nlink, set of owners]."""
    total = 0
    stack = [os.fspath(path)]
    try:
        st = os.lstat(stack[0])
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total += st.st_size
    while stack:
        # a running container (or a build's cache mount) may delete what we are walking: what
        # vanished meanwhile is simply not counted (df must not fail on a busy volume)
        try:
            it = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    known = links.setdefault((st.st_dev, st.st_ino), [st.st_size, 0, st.st_nlink, set()])
                    known[1] += 1
                    known[3].add(owner)
                    continue
                total += st.st_size
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    if owner is None:  # a tree on its own: each linked file once
        total += sum(size for size, _, _, _ in links.values())
    return total


def freed_bytes(paths: Sequence[Path]) -> int:
    """What deleting these trees frees: a file also linked from elsewhere frees nothing."""
    links: dict[tuple[int, int], list] = {}
    total = sum(_walk_bytes(p, links, str(p)) for p in paths)
    return total + sum(size for size, seen, nlink, _ in links.values() if seen >= nlink)


def layer_dir_items(paths: Sequence[Path]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Sizes of layer dirs as df items: `dir:<id>` for what one dir holds alone, and an
    `ino:<dev>:<ino>` item for a file linked into several (COPY reuse), so that it counts once
    and as shared by every image whose layers link it; with each dir's `ino:` items."""
    links: dict[tuple[int, int], list] = {}
    sizes = {f"dir:{p.name}": _walk_bytes(p, links, p.name) for p in paths}
    extra: dict[str, set[str]] = {p.name: set() for p in paths}
    for (dev, ino), (size, _, _, owners) in links.items():
        if len(owners) == 1:
            sizes[f"dir:{next(iter(owners))}"] += size
            continue
        item = f"ino:{dev}:{ino}"
        sizes[item] = size
        for owner in owners:
            extra[owner].add(item)
    return sizes, extra


# -- figures (pure) -------------------------------------------------------------------------------


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
                                sum(1 for c in inv.containers if c.manifest == m))
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


# -- from disk ------------------------------------------------------------------------------------


def inventory(store) -> Inventory:
    """Measure the store: every blob and layer dir, and who uses which."""
    sizes: dict[str, int] = {}
    for path in store.paths.blobs.iterdir():
        if _HEX64.fullmatch(path.name):
            sizes[f"blob:{path.name}"] = path.stat().st_size
    dir_sizes, linked = layer_dir_items(sorted(store.paths.layers.iterdir()))
    sizes.update(dir_sizes)
    layers: dict[str, frozenset[str]] = {}

    def layer_items(layer: Layer) -> frozenset[str]:
        name = layer.diff_id.hex[:LAYER_ID_LEN]
        items = frozenset(i for i in (f"blob:{layer.descriptor.digest.hex}", f"dir:{name}")
                          if i in sizes) | linked.get(name, set())
        layers[str(layer.diff_id)] = items
        return items

    containers = _containers(store)
    images, names = _images(store, layer_items, [c.manifest for c in containers])
    cache = {key: layer_items(entry.layer) for key, entry in Cache(store).entries()
             if entry is not None and entry.layer is not None}
    claimed = _union(layers.values())
    for item in sizes:  # unreferenced blobs and dirs: each its own "layer" (prune removes them)
        if item not in claimed and not item.startswith("ino:") and not _is_image_metadata(item, images):
            extra = linked.get(item.removeprefix("dir:"), set()) if item.startswith("dir:") else set()
            layers[item] = frozenset({item}) | extra
    return Inventory(sizes, images, names, layers, cache, containers, _volumes(store.root),
                     _cache_mounts(store.root))


def _is_image_metadata(item: str, images: Mapping[str, frozenset[str]]) -> bool:
    """Manifests and configs of a known image (they count under Images, not Layers)."""
    return any(item in items for items in images.values())


def _images(store, layer_items, extra: Sequence[str]):
    """manifest digest -> items (manifest, config, layers); and -> tag names."""
    from minibuild.oci.digest import Digest
    from minibuild.oci.image import MANIFEST_MEDIA_TYPE, Descriptor

    names: dict[str, list[str]] = {}
    descriptors = {}
    for name, desc in store.tags():
        names.setdefault(str(desc.digest), []).append(name)
        descriptors[str(desc.digest)] = desc
    for digest in extra:
        if digest not in descriptors and store.has_blob(Digest.parse(digest)):
            descriptors[digest] = Descriptor(MANIFEST_MEDIA_TYPE, Digest.parse(digest), 0)
    images = {}
    for digest, desc in descriptors.items():
        image = store.load_image(desc)
        config = store.read_json(desc.digest)["config"]["digest"]
        items = {f"blob:{desc.digest.hex}", f"blob:{config.removeprefix('sha256:')}"}
        for layer in image.layers:
            items |= layer_items(layer)
        images[digest] = frozenset(items)
    return images, {k: tuple(v) for k, v in names.items()}


def _containers(store) -> list[ContainerFigures]:
    records = Containers(store.root)
    return [ContainerFigures(c.id, c.name, c.image, str(c.manifest.digest),
                             tree_bytes(records.path(c.id)), records.status(c) == "running")
            for c in records.all()]


def _volumes(root: Path) -> list[VolumeFigures]:
    """Each volume's _data bytes and the number of containers naming it."""
    records = Containers(root).all()
    return [VolumeFigures(v.name, tree_bytes(v.mountpoint), len(users(v.name, records)),
                          v.anonymous) for v in Volumes(root).all()]


def _cache_mounts(root: Path) -> list[CacheMountFigures]:
    """Each RUN cache mount dir, and whether a build holds its flock (read from /proc/locks,
    so df never takes a lock a build might want)."""
    directory = cache_mount_dir(root)
    try:
        entries = sorted((e for e in os.scandir(directory)
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                         key=lambda e: e.name)
    except FileNotFoundError:
        return []
    held = held_locks()
    out = []
    for entry in entries:
        try:
            st = os.stat(directory / f"{entry.name}.lock")
            in_use = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held
        except FileNotFoundError:
            in_use = False
        out.append(CacheMountFigures(entry.name, tree_bytes(Path(entry.path)), in_use))
    return out


def held_locks(text: str | None = None) -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file some process holds a lock on (/proc/locks)."""
    if text is None:
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return set()
    held = set()
    for line in text.splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        for field in fields:
            parts = field.split(":")
            if len(parts) == 3 and all(parts):
                try:
                    held.add((int(parts[0], 16), int(parts[1], 16), int(parts[2])))
                except ValueError:
                    continue
                break
    return held


def measure(store) -> Usage:
    """The df figures of a store."""
    return account(inventory(store))
