"""What in the store is still needed: the blobs and unpacked layers that some root refers to.

Roots are the images of the index (tagged or kept without a tag), plus whatever the caller adds (containers' images, cache entries).
`prune` deletes the rest; `fsck` reports what a root needs but is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Layer


@dataclass
class Reachable:
    """Blobs (by digest) and unpacked layers (by DiffID) some root needs."""

    blobs: set[Digest] = field(default_factory=set)
    diff_ids: set[Digest] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def add_layer(self, layer: Layer) -> None:
        """A layer needs its blob and its unpacked dir."""
        self.blobs.add(layer.descriptor.digest)
        self.diff_ids.add(layer.diff_id)


def reachable(store, manifests: Iterable[Descriptor] = (), layers: Iterable[Layer] = ()) -> Reachable:
    """Everything the stored images, the extra manifests and the extra layers need.

    An unreadable manifest or config is recorded in `problems` (not raised): a GC must still
    protect what it can read, and fsck reports the rest.
    """
    found = Reachable()
    roots = [image.descriptor for image in store.images()] + list(manifests)
    for descriptor in roots:
        found.blobs.add(descriptor.digest)
        try:
            image = store.load_image(descriptor)
            manifest = store.read_json(descriptor.digest)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            found.problems.append(f"manifest {descriptor.digest}: {exc}")
            continue
        found.blobs.add(Digest.parse(manifest["config"]["digest"]))
        for layer in image.layers:
            found.add_layer(layer)
    for layer in layers:
        found.add_layer(layer)
    return found
