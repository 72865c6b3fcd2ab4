"""The step cache on a fake store: keys, entries, misses, COPY reuse hints."""

from __future__ import annotations

import pytest

from minibuild.build.cache import Cache, CacheEntry, step_key
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Layer
from tests.unit.build.fakes import LAYER_TYPE, FakeStore


@pytest.fixture
def store(tmp_path) -> FakeStore:
    return FakeStore(tmp_path / "store")


def stored_layer(store: FakeStore, name: bytes) -> Layer:
    blob = Digest.of(b"blob " + name)
    store.blobs[blob] = b"..."
    return Layer(Descriptor(LAYER_TYPE, blob, 3), Digest.of(name))


def test_a_key_chains_its_parent_and_its_canonical_description():
    key = step_key("parent", {"run": ["sh"], "cwd": "/"})
    assert key == step_key("parent", {"cwd": "/", "run": ["sh"]})  # order does not matter
    assert key != step_key("other", {"run": ["sh"], "cwd": "/"})
    assert key != step_key("parent", {"run": ["sh"], "cwd": "/x"})
    assert len(key) == 64


def test_an_entry_comes_back_as_it_was_put(store):
    cache = Cache(store)
    with_layer = CacheEntry(stored_layer(store, b"a"), History(created_by="RUN a", created="2024"))
    without = CacheEntry(None, History(created_by="ENV A=1", empty_layer=True))
    assert cache.get("k1") is None
    cache.put("k1", with_layer)
    cache.put("k2", without)
    assert cache.get("k1") == with_layer and cache.get("k2") == without
    assert cache.entry_path("k1") == store.root / "cache" / "steps" / "k1.json"
    assert dict(cache.entries()) == {"k1": with_layer, "k2": without}
    cache.remove("k1")
    assert cache.get("k1") is None and cache.get("k2") == without


def test_an_entry_whose_blob_is_gone_or_that_is_damaged_is_a_miss(store):
    cache = Cache(store)
    layer = stored_layer(store, b"a")
    cache.put("k", CacheEntry(layer, History(created_by="RUN a")))
    del store.blobs[layer.descriptor.digest]  # gc took the blob
    assert cache.get("k") is None
    cache.entry_path("bad").write_text("{not json")
    assert cache.get("bad") is None
    assert ("bad", None) in list(cache.entries())


def test_a_copy_hint_names_a_layer_dir_while_it_exists(store):
    cache = Cache(store)
    diff_id = Digest.of(b"layer")
    assert cache.get_copy("shape") is None
    cache.put_copy("shape", diff_id)
    assert cache.get_copy("shape") is None  # the layer dir is not unpacked
    store.layer_path(diff_id).mkdir()
    assert cache.get_copy("shape") == store.layer_path(diff_id)
    (store.root / "cache" / "copies" / "junk.json").write_text("[]")
    assert cache.get_copy("junk") is None
    assert cache.drop_copies() == 2
    assert cache.get_copy("shape") is None
