"""Read-only views of the store for `history` and `images`: rows of figures, no formatting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minibuild.layer.accounting import wasted_space
from minibuild.oci.image import Descriptor, Image
from minibuild.oci.reference import Reference


@dataclass(frozen=True)
class HistoryRow:
    """One history entry joined with its layer's figures."""

    created: str | None
    created_by: str
    comment: str | None
    empty_layer: bool
    diff_id: str | None
    digest: str | None
    size: int
    blob_size: int
    wasted: int
    hidden: tuple[tuple[str, int, str, int], ...]   # (path, size, how, by_layer)
    layer: int | None

    def to_json(self) -> dict[str, Any]:
        """The `history --format json` object."""
        return {
            "created": self.created, "created_by": self.created_by, "comment": self.comment or "",
            "empty_layer": self.empty_layer, "diff_id": self.diff_id, "digest": self.digest,
            "size": self.size, "blob_size": self.blob_size, "wasted": self.wasted,
            "wasted_paths": [{"path": "/" + p, "size": s, "how": h} for p, s, h, _ in self.hidden],
        }


def history_rows(store, image: Image) -> list[HistoryRow]:
    """Each history entry (oldest first) with its layer's size and hidden bytes."""
    summaries = [store.layer_summary(layer) for layer in image.layers]
    waste = wasted_space(summaries)
    rows = []
    for entry, index in image.config.layer_history():
        if index is None or index >= len(image.layers):
            rows.append(HistoryRow(entry.created, entry.created_by, entry.comment, True,
                                   None, None, 0, 0, 0, (), None))
            continue
        layer = image.layers[index]
        hidden = tuple((h.path, h.size, h.how, h.by_layer) for h in waste[index].paths)
        rows.append(HistoryRow(entry.created, entry.created_by, entry.comment, False,
                               str(layer.diff_id), str(layer.descriptor.digest),
                               summaries[index].content_size, layer.descriptor.size,
                               waste[index].wasted, hidden, index))
    return rows


@dataclass(frozen=True)
class ImageEntry:
    """One stored image for `images`: its IDs, tags, creation time, content size, labels."""

    descriptor: Descriptor  # the manifest's
    image_id: str  # the config digest
    names: tuple[str, ...]
    created: str | None
    size: int
    labels: dict[str, str]
    diff_ids: tuple[str, ...]

    @property
    def digest(self) -> str:
        """The manifest digest (docker's DIGEST)."""
        return str(self.descriptor.digest)


def image_entries(store) -> list[ImageEntry]:
    """Every image of the store (tagged or not), newest first as docker lists them."""
    out = []
    for stored in store.images():
        image = store.load_image(stored.descriptor)
        config_digest = store.read_json(stored.descriptor.digest)["config"]["digest"]
        size = sum(store.layer_summary(layer).content_size for layer in image.layers)
        out.append(ImageEntry(stored.descriptor, config_digest, stored.names, image.config.created,
                              size, dict(image.config.config.labels or {}),
                              tuple(str(d) for d in image.config.diff_ids)))
    return sorted(out, key=lambda e: e.created or "", reverse=True)


def image_json(entry: ImageEntry, name: str | None) -> dict[str, Any]:
    """One `images --format json` object: an image under one tag (or `<none>`)."""
    ref = Reference.parse(name) if name else None
    return {"repository": ref.name if ref else "<none>",
            "tag": (ref.tag or "<none>") if ref else "<none>", "id": entry.image_id,
            "digest": entry.digest, "created": entry.created, "size": entry.size}


def image_list(store) -> list[dict[str, Any]]:
    """One `images --format json` object per tag (one `<none>` for an untagged image)."""
    return [image_json(entry, name) for entry in image_entries(store)
            for name in entry.names or (None,)]


def created_of(store, text: str) -> str | None:
    """When the image `text` names was created (for the before= and since= filters)."""
    return store.load_image(store.find(text).descriptor).config.created
