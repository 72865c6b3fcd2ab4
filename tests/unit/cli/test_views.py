"""The read-only views behind `history`, `layers` and `images`, on a fake store."""

from __future__ import annotations

from dataclasses import replace

from minibuild.cli.views import HistoryRow, history_rows, image_list
from minibuild.layer.snapshot import LayerSummary
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer
from minibuild.store.index import StoredImage

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer(name: str, blob_size: int) -> Layer:
    return Layer(Descriptor(LAYER, Digest.of(f"blob {name}".encode()), blob_size),
                 Digest.of(f"tar {name}".encode()))


BASE = layer("base", 400)
RM = layer("rm", 50)
EDIT = layer("edit", 60)
SUMMARIES = {
    BASE.diff_id: LayerSummary((("app/big", 1000), ("keep", 5)), (), (), 1005),
    RM.diff_id: LayerSummary((), ("app/big",), (), 0),
    EDIT.diff_id: LayerSummary((("keep", 7),), (), (), 7),
}


def sample_image() -> Image:
    image = Image().append(BASE, History("COPY . /", created="2024-01-01T00:00:00Z"))
    image = image.append(None, History("ENV A=1", comment="note"))
    image = image.append(RM, History("RUN rm -rf /app/big"))
    return image.append(EDIT, History("RUN echo more >> keep"))


class FakeStore:
    """Summaries by DiffID, and tagged images by manifest digest."""

    def __init__(self, images: dict[str, Image] | None = None) -> None:
        self.stored = images or {}

    def layer_summary(self, one: Layer) -> LayerSummary:
        return SUMMARIES[one.diff_id]

    def _descriptor(self, name: str) -> Descriptor:
        return Descriptor(MANIFEST, Digest.of(f"manifest {name}".encode()), 1)

    def images(self):
        return [StoredImage(self._descriptor(name), (name,)) for name in self.stored]

    def load_image(self, descriptor: Descriptor) -> Image:
        return next(image for name, image in self.stored.items()
                    if self._descriptor(name) == descriptor)

    def read_json(self, digest: Digest) -> dict:
        return {"config": {"digest": "sha256:" + "c" * 64}}


def test_each_history_entry_gets_its_layers_figures():
    rows = history_rows(FakeStore(), sample_image())
    assert [r.layer for r in rows] == [0, None, 1, 2]
    assert [r.empty_layer for r in rows] == [False, True, False, False]
    base, env, rm, edit = rows
    assert (base.diff_id, base.digest) == (str(BASE.diff_id), str(BASE.descriptor.digest))
    assert (base.size, base.blob_size, base.created) == (1005, 400, "2024-01-01T00:00:00Z")
    assert (env.comment, env.size, env.diff_id, env.hidden) == ("note", 0, None, ())
    assert (rm.size, rm.wasted, edit.wasted) == (0, 0, 0)


def test_bytes_hidden_by_later_layers_are_charged_to_the_layer_that_added_them():
    base = history_rows(FakeStore(), sample_image())[0]
    assert base.wasted == 1005
    assert sorted(base.hidden) == [("app/big", 1000, "deleted", 1), ("keep", 5, "overwritten", 2)]


def test_a_history_entry_past_the_last_layer_counts_as_empty():
    image = sample_image()
    ghost = replace(image.config, history=image.config.history + (History("RUN ghost"),))
    rows = history_rows(FakeStore(), replace(image, config=ghost))
    assert rows[-1] == HistoryRow(None, "RUN ghost", None, True, None, None, 0, 0, 0, (), None)


def test_history_json_names_the_wasted_paths_from_the_root():
    base = history_rows(FakeStore(), sample_image())[0].to_json()
    assert base["comment"] == "" and base["wasted"] == 1005 and not base["empty_layer"]
    assert {"path": "/app/big", "size": 1000, "how": "deleted"} in base["wasted_paths"]
    assert set(base) == {"created", "created_by", "comment", "empty_layer", "diff_id", "digest",
                         "size", "blob_size", "wasted", "wasted_paths"}


def test_image_list_has_one_row_per_tag():
    image = sample_image()
    rows = image_list(FakeStore({"app:1.0": image, "localhost/tool": image}))
    assert [(r["repository"], r["tag"]) for r in rows] == [("app", "1.0"),
                                                           ("localhost/tool", "latest")]
    assert all(r["size"] == 1005 + 0 + 7 and r["id"] == "sha256:" + "c" * 64 for r in rows)
    assert rows[0]["digest"] == str(Digest.of(b"manifest app:1.0"))
    assert rows[0]["created"] is None
