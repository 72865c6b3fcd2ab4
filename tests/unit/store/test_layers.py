"""Unpacked layers: adopted by rename, unpacked from their blob with the DiffID checked, and
their summaries kept (and recomputed when lost)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from minibuild.errors import StoreError
from minibuild.layer.snapshot import LayerSummary
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, Layer
from minibuild.store.cas import Blobs
from minibuild.store.layers import LAYER_ID_LEN, LayerDirs
from minibuild.store.paths import StorePaths
from minibuild.store.session import Session

TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture
def layers(tmp_path):
    paths = StorePaths.at(tmp_path / "store")
    for d in (paths.blobs, paths.layers, paths.meta, paths.run):
        d.mkdir(parents=True)
    session = Session(paths.run)
    yield LayerDirs(paths, Blobs(paths, session.dir), session.scratch)
    session.close()


def tar_of(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def stored_layer(layers: LayerDirs, files: dict[str, bytes]) -> Layer:
    data = tar_of(files)
    return Layer(layers.blobs.put_bytes(data, TAR), Digest.of(data))


def test_adopt_layer_keeps_the_first_copy(layers):
    diff_id = Digest.of(b"layer")
    for content in ("first", "second"):
        upper = layers.scratch("upper")
        (upper / "f").write_text(content)
        path = layers.adopt_layer(diff_id, upper)
        assert not upper.exists()
    assert (path / "f").read_text() == "first"
    assert path == layers.layer_path(diff_id) and path.name == diff_id.hex[:LAYER_ID_LEN]


def test_ensure_layer_unpacks_once_and_keeps_the_summary(layers):
    layer = stored_layer(layers, {"etc/hello": b"hi\n", "bin/tool": b"#!/bin/sh\n"})
    path = layers.ensure_layer(layer)
    assert path == layers.layer_path(layer.diff_id)
    assert (path / "etc" / "hello").read_bytes() == b"hi\n" and (path.stat().st_mode & 0o777) == 0o755
    summary = json.loads(layers.summary_path(layer.diff_id).read_text())
    assert summary["content_size"] == 13
    (path / "marker").touch()
    assert layers.ensure_layer(layer) == path and (path / "marker").exists()  # not unpacked again
    assert [p.name for p in layers.scratch("probe").parent.iterdir() if p.name.startswith("unpack")] == []


def test_a_blob_that_unpacks_to_another_diff_id_is_refused(layers):
    real = stored_layer(layers, {"f": b"x"})
    lying = Layer(real.descriptor, Digest.of(b"something else"))
    with pytest.raises(StoreError, match="unpacks to DiffID"):
        layers.ensure_layer(lying)
    assert not layers.layer_path(lying.diff_id).exists()
    assert not layers.layer_path(real.diff_id).exists()
    assert [p.name for p in layers.scratch("probe").parent.iterdir() if p.name.startswith("unpack")] == []


def test_a_saved_summary_is_read_back_and_a_lost_one_recomputed(layers):
    layer = stored_layer(layers, {"a": b"12345"})
    saved = LayerSummary((("a", 99),), (), (), 99)  # deliberately not what the blob holds
    layers.save_summary(layer.diff_id, saved)
    assert layers.layer_summary(layer) == saved
    layers.summary_path(layer.diff_id).write_text("{damaged")
    recomputed = layers.layer_summary(layer)
    assert recomputed.files == (("a", 5),) and recomputed.content_size == 5
    assert LayerSummary.from_json(json.loads(layers.summary_path(layer.diff_id).read_text())) == recomputed


def test_the_blobs_seen_to_hold_a_layer_are_recorded_and_kept_across_saves(layers):
    layer = stored_layer(layers, {"a": b"1"})
    assert not layers.verified(layer)
    layers.ensure_layer(layer)
    assert layers.verified(layer)
    other = Digest.of(b"the same tar, compressed otherwise")
    layers.save_summary(layer.diff_id, layers.layer_summary(layer),
                        {other: "application/vnd.oci.image.layer.v1.tar+gzip"})
    assert layers.verified(layer)  # the first record survives the second save
    assert layers.verified(Layer(Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", other, 1),
                                 layer.diff_id))
    assert not layers.verified(Layer(layer.descriptor, Digest.of(b"another DiffID")))


def test_a_lost_summary_is_not_recomputed_from_a_blob_of_another_diff_id(layers):
    real = stored_layer(layers, {"f": b"x"})
    with pytest.raises(StoreError, match="decompresses to DiffID"):
        layers.layer_summary(Layer(real.descriptor, Digest.of(b"something else")))
