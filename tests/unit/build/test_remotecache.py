"""The step cache with a registry behind it: misses go to the registry, min/max export."""

from __future__ import annotations

from minibuild.build.cache import CacheEntry
from minibuild.build.remotecache import RemoteCache
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer


class _Local:
    def __init__(self):
        self.entries = {}

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, entry):
        self.entries[key] = entry


class _Registry:
    def __init__(self, held):
        self.held, self.asked = held, []

    def fetch(self, key):
        self.asked.append(key)
        return self.held.get(key)


def _layer(n: int) -> Layer:
    return Layer(Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.of(b"%d" % n), 1),
                 Digest.of(b"diff %d" % n))


def test_a_local_miss_asks_the_registry_and_keeps_what_it_got():
    history = History(created_by="RUN make", created="2020-01-01T00:00:00Z")
    local, registry = _Local(), _Registry({"k1": (_layer(1), history)})
    cache = RemoteCache(local, registry)
    assert cache.get("k1") == CacheEntry(_layer(1), history) and local.entries["k1"].layer == _layer(1)
    assert cache.get("k2") is None and registry.asked == ["k1", "k2"]
    assert cache.imported == ["k1"]
    cache.get("k1")
    assert registry.asked == ["k1", "k2"]  # now local


def test_min_exports_the_final_image_steps_and_max_every_step():
    other = History(created_by="RUN in another stage", created="2020-01-01T00:00:01Z")
    final = History(created_by="RUN in the target", created="2020-01-01T00:00:02Z")
    image = Image().append(None, final)  # the engine keeps the entry as the image holds it
    cache = RemoteCache(_Local(), None)
    cache.put("other", CacheEntry(_layer(1), other))
    cache.put("final", CacheEntry(None, image.config.history[-1]))
    assert [key for key, _, _ in cache.exportable(image, "min")] == ["final"]
    assert [key for key, _, _ in cache.exportable(image, "max")] == ["other", "final"]
