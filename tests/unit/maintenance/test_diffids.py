"""fsck checks the DiffIDs a config claims against the layer blobs (issue 13, finding 8): a
store where an image names layer A's blob under layer C's DiffID (as an older minibuild let
`load` make) is an error for the cheap and the deep check; a claim seen to hold is recorded,
so the next cheap check does not decompress the blob again, and the deep one trusts no record."""

from __future__ import annotations

import pytest

from minibuild.maintenance import fsck
from minibuild.oci.image import History, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.store.layers import LayerDirs
from minibuild.store.layout import Store
from tests.unit.maintenance.test_fsck import put_layer, tag_image


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def reads(monkeypatch):
    """The layers fsck read through (decompressed) to check their DiffID."""
    seen: list[Layer] = []
    real = LayerDirs.read_through

    def counting(self, layer):
        seen.append(layer)
        return real(self, layer)

    monkeypatch.setattr(LayerDirs, "read_through", counting)
    return seen


def lie(store: Store, ref: str, blob_of: Layer, diff_id_of: Layer) -> None:
    """Tag an image whose manifest names one layer's blob under another layer's DiffID."""
    image = Image().append(Layer(blob_of.descriptor, diff_id_of.diff_id), History("ADD lie"))
    store.tag(Reference.parse(ref), store.write_image(image))


@pytest.mark.parametrize("deep", [False, True])
def test_a_blob_named_under_another_diff_id_is_an_error(store, deep):
    a, c = put_layer(store, "a"), put_layer(store, "c")
    tag_image(store, "a:1", a)
    tag_image(store, "c:1", c)
    lie(store, "evil:1", a, c)
    report = fsck.check(store, deep=deep)
    wrong = [f for f in report.errors if "decompresses to DiffID" in f.message]
    assert len(wrong) == 1 and wrong[0].where == "tag evil:1: layer 0", report.errors
    assert str(a.diff_id) in wrong[0].message and str(c.diff_id) in wrong[0].message
    assert not store.layer_dirs.verified(Layer(a.descriptor, c.diff_id))


def test_a_claim_that_holds_is_recorded_and_not_read_again(store, reads):
    a = put_layer(store, "a")  # saved without the record, as an older minibuild did
    tag_image(store, "a:1", a)
    assert fsck.check(store).ok and reads == [a]
    assert store.layer_dirs.verified(a)
    reads.clear()
    assert fsck.check(store).ok and reads == []


def test_the_deep_check_trusts_no_record(store, reads):
    a, c = put_layer(store, "a", unpack=False), put_layer(store, "c")
    tag_image(store, "a:1", a)
    tag_image(store, "c:1", c)
    fsck.check(store)
    lie(store, "evil:1", a, c)
    store.layer_dirs.note_verified(Layer(a.descriptor, c.diff_id))  # a record that lies
    assert fsck.check(store).ok  # the cheap check trusts it
    reads.clear()
    report = fsck.check(store, deep=True)
    assert any("decompresses to DiffID" in f.message for f in report.errors)
    # c's dir is compared by the deep pass itself (its blob is read there, not twice)
    assert c not in reads and a in reads
