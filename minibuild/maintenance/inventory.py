"""`df` from disk: every blob, layer dir, container, volume and RUN cache mount of a store, and
who uses which, as an `Inventory` of items for usage.account.

Nothing here takes a lock: a cache mount's lock is read from /proc/locks, so `df` never makes a
build wait.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from minibuild.build.cache import Cache
from minibuild.build.cachemounts import cache_mount_dir
from minibuild.containers.records import Containers
from minibuild.containers.volumes import Volumes, users
from minibuild.maintenance.treesize import layer_dir_items, tree_bytes
from minibuild.maintenance.usage import CacheMountFigures, ContainerFigures, Inventory, Usage, \
    VolumeFigures, account
from minibuild.oci.image import Layer
from minibuild.store.layers import LAYER_ID_LEN

_HEX64 = re.compile(r"[0-9a-f]{64}")


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
    images, names, ids = _images(store, layer_items, [c.manifest for c in containers])
    cache = {key: layer_items(entry.layer) for key, entry in Cache(store).entries()
             if entry is not None and entry.layer is not None}
    claimed = set().union(*layers.values())
    for item in sizes:  # unreferenced blobs and dirs: each its own "layer" (prune removes them)
        if item not in claimed and not item.startswith("ino:") and not _is_image_metadata(item, images):
            extra = linked.get(item.removeprefix("dir:"), set()) if item.startswith("dir:") else set()
            layers[item] = frozenset({item}) | extra
    return Inventory(sizes, images, names, layers, cache, containers, _volumes(store.root),
                     _cache_mounts(store.root), ids)


def _is_image_metadata(item: str, images: Mapping[str, frozenset[str]]) -> bool:
    """Manifests and configs of a known image (they count under Images, not Layers)."""
    return any(item in items for items in images.values())


def _images(store, layer_items, extra: Sequence[str]):
    """manifest digest -> items (manifest, config, layers); -> tag names; -> image ID."""
    from minibuild.oci.digest import Digest
    from minibuild.oci.image import Descriptor
    from minibuild.oci.mediatypes import MANIFEST_MEDIA_TYPE

    names: dict[str, list[str]] = {}
    descriptors = {}
    for stored in store.images():  # tagged or kept without a tag
        names[str(stored.descriptor.digest)] = list(stored.names)
        descriptors[str(stored.descriptor.digest)] = stored.descriptor
    for digest in extra:
        if digest not in descriptors and store.has_blob(Digest.parse(digest)):
            descriptors[digest] = Descriptor(MANIFEST_MEDIA_TYPE, Digest.parse(digest), 0)
    images, ids = {}, {}
    for digest, desc in descriptors.items():
        image = store.load_image(desc)
        config = store.read_json(desc.digest)["config"]["digest"]
        ids[digest] = config
        items = {f"blob:{desc.digest.hex}", f"blob:{config.removeprefix('sha256:')}"}
        for layer in image.layers:
            items |= layer_items(layer)
        images[digest] = frozenset(items)
    return images, {k: tuple(v) for k, v in names.items()}, ids


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
