"""Read-only views of the store for `history` and `images`: rows of figures, no formatting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minibuild.layer.accounting import wasted_space
from minibuild.oci.image import Image
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


def image_list(store) -> list[dict[str, Any]]:
    """Every tag with its image id (config digest), creation time and content size."""
    out = []
    for name, descriptor in store.tags():
        image = store.load_image(descriptor)
        ref = Reference.parse(name)
        manifest_config = store.read_json(descriptor.digest)["config"]["digest"]
        size = sum(store.layer_summary(layer).content_size for layer in image.layers)
        out.append({"repository": ref.name, "tag": ref.tag or "<none>", "id": manifest_config,
                    "digest": str(descriptor.digest), "created": image.config.created, "size": size})
    return out
