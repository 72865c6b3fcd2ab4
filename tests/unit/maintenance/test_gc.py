"""rmi/prune's collection on hand-made stores (no root): what a tag, a container or a cache entry
needs stays, the rest goes, and nothing goes when a root cannot be read."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from minibuild.build.cache import Cache, CacheEntry
from minibuild.build.cachemounts import cache_mount_dir
from minibuild.containers.records import Container, Containers
from minibuild.errors import StoreError
from minibuild.maintenance import gc
from minibuild.oci.digest import Digest
from minibuild.oci.image import History, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.layer.snapshot import LayerSummary
from minibuild.store.layout import Store

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def put_layer(store: Store, name: str, size: int = 10) -> Layer:
    """A one-file gzip layer: blob, summary and unpacked dir (the file holds `size` bytes)."""
    data = name.encode().ljust(size, b".")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    diff_id = Digest.of(raw.getvalue())
    descriptor = store.put_bytes(gzip.compress(raw.getvalue(), mtime=0), GZIP_LAYER)
    store.save_summary(diff_id, LayerSummary(((name, len(data)),), (), (), len(data)))
    store.layer_path(diff_id).mkdir()
    (store.layer_path(diff_id) / name).write_bytes(data)
    return Layer(descriptor, diff_id)


def image_of(store: Store, *layers: Layer):
    image = Image()
    for layer in layers:
        image = image.append(layer, History(f"COPY {layer.diff_id.short}"))
    return store.write_image(image)


def container_on(store: Store, manifest, diff_ids=()) -> Container:
    return Containers(store.root).create(Container(
        id="", name="", image="x", manifest=manifest, diff_ids=tuple(diff_ids), argv=("sh",),
        env=(), cwd="/", user="", network="host", created="2024-01-01T00:00:00Z"))


def blob_names(store: Store) -> set[str]:
    return {p.name for p in store.paths.blobs.iterdir()}


def layer_dirs(store: Store) -> set[str]:
    return {p.name for p in store.paths.layers.iterdir()}


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


def test_roots_are_the_tags_the_containers_and_the_cache(store):
    tagged, used, cached = put_layer(store, "t"), put_layer(store, "u"), put_layer(store, "c")
    put_layer(store, "orphan")
    store.tag(Reference.parse("app:1"), image_of(store, tagged))
    container_on(store, image_of(store, used))
    Cache(store).put("a" * 64, CacheEntry(cached, History("RUN c")))
    keep = gc.roots(store)
    assert keep.diff_ids == {tagged.diff_id, used.diff_id, cached.diff_id}
    assert cached.descriptor.digest in keep.blobs and not keep.problems
    assert cached.diff_id not in gc.roots(store, with_cache=False).diff_ids


def test_a_containers_layers_stay_even_when_its_image_is_unreadable(store):
    layer = put_layer(store, "a")
    manifest = image_of(store, layer)
    container_on(store, manifest, [layer.diff_id])
    store.blob_path(manifest.digest).unlink()
    keep = gc.roots(store)
    assert layer.diff_id in keep.diff_ids
    assert keep.problems and str(manifest.digest) in keep.problems[0]


def test_collect_deletes_what_nothing_needs_and_counts_it(store):
    kept, gone = put_layer(store, "kept", 100), put_layer(store, "gone", 5000)
    manifest = image_of(store, kept)
    store.tag(Reference.parse("app:1"), manifest)
    gone_blob = store.blob_path(gone.descriptor.digest).stat().st_size
    collected = gc.collect(store)
    assert collected.blobs == (str(gone.descriptor.digest),)
    assert collected.layer_dirs == (store.layer_path(gone.diff_id).name,)
    assert collected.summaries == 1 and collected.cache_entries == 0
    assert collected.freed >= gone_blob + 5000
    assert kept.descriptor.digest.hex in blob_names(store)
    assert gone.descriptor.digest.hex not in blob_names(store)
    assert layer_dirs(store) == {store.layer_path(kept.diff_id).name}
    assert {p.stem for p in store.paths.meta.glob("*.json")} == {kept.diff_id.hex}
    assert store.load_image(manifest).layers == (kept,)


def test_an_untagged_image_is_a_root_until_prune_drops_it(store):
    dangling, used = put_layer(store, "d"), put_layer(store, "u")
    manifest = image_of(store, dangling)
    store.add_image(manifest)
    under_container = image_of(store, used)
    store.add_image(under_container)
    container_on(store, under_container)
    assert gc.collect(store).blobs == ()  # rmi's collection keeps every image of the index
    image_id = str(store.image_id(manifest))
    collected = gc.collect(store, dangling=True)  # prune: dangling images nobody uses go
    assert collected.images == (image_id,)
    assert dangling.descriptor.digest.hex not in blob_names(store)
    assert used.descriptor.digest.hex in blob_names(store)
    assert [i.descriptor.digest for i in store.images()] == [under_container.digest]


def test_a_second_collection_finds_nothing(store):
    store.tag(Reference.parse("app:1"), image_of(store, put_layer(store, "a")))
    put_layer(store, "b")
    gc.collect(store)
    again = gc.collect(store)
    assert (again.blobs, again.layer_dirs, again.summaries, again.freed) == ((), (), 0, 0)


def test_a_stray_file_among_the_blobs_is_left_to_fsck(store):
    stray = store.paths.blobs / "not-a-digest"
    stray.write_text("x")
    gc.collect(store)
    assert stray.exists()


def test_a_file_linked_from_a_kept_layer_frees_nothing(store):
    kept, gone = put_layer(store, "kept"), put_layer(store, "gone")
    store.tag(Reference.parse("app:1"), image_of(store, kept))
    big = store.layer_path(kept.diff_id) / "big"
    big.write_bytes(b"x" * 100_000)
    os.link(big, store.layer_path(gone.diff_id) / "big")  # COPY reuse links one file twice
    collected = gc.collect(store)
    assert collected.layer_dirs == (store.layer_path(gone.diff_id).name,)
    assert collected.freed < 100_000
    assert big.stat().st_nlink == 1


def test_cache_entries_keep_their_layers_until_drop_cache(store):
    cached = put_layer(store, "c")
    cache = Cache(store)
    cache.put("a" * 64, CacheEntry(cached, History("RUN c")))
    mounts = cache_mount_dir(store.root) / "m1"
    mounts.mkdir(parents=True)
    assert gc.collect(store).blobs == ()
    assert store.layer_path(cached.diff_id).is_dir()
    dropped = gc.collect(store, drop_cache=True)
    assert dropped.cache_entries == 1 and dropped.blobs == (str(cached.descriptor.digest),)
    assert list(cache.entries()) == [] and not mounts.exists()


def test_a_dangling_or_unreadable_cache_entry_is_dropped_anyway(store):
    kept, lost = put_layer(store, "kept"), put_layer(store, "lost")
    cache = Cache(store)
    cache.put("a" * 64, CacheEntry(kept, History("RUN a")))
    cache.put("b" * 64, CacheEntry(lost, History("RUN b")))
    cache.put("c" * 64, CacheEntry(None, History("ENV x=1", empty_layer=True)))
    (cache.dir / f"{'d' * 64}.json").write_text("{broken")
    store.blob_path(lost.descriptor.digest).unlink()
    assert gc.collect(store).cache_entries == 2
    assert sorted(key for key, _ in cache.entries()) == ["a" * 64, "c" * 64]


def test_nothing_is_collected_when_a_root_cannot_be_read(store):
    layer = put_layer(store, "a")
    manifest = image_of(store, layer)
    store.tag(Reference.parse("app:1"), manifest)
    orphan = put_layer(store, "orphan")
    store.blob_path(manifest.digest).write_bytes(b"garbage")
    with pytest.raises(StoreError, match="not collecting") as caught:
        gc.collect(store)
    assert "fsck" in caught.value.hint
    assert orphan.descriptor.digest.hex in blob_names(store)


def test_collect_waits_for_no_one(tmp_path):
    with Store.open(tmp_path / "store") as first, Store.open(tmp_path / "store") as second:
        put_layer(first, "a")
        with pytest.raises(StoreError):
            gc.collect(second)
        assert len(blob_names(first)) == 1


def test_a_container_keeps_its_untagged_image(store):
    layer = put_layer(store, "a")
    manifest = image_of(store, layer)
    record = container_on(store, manifest, [layer.diff_id])
    assert gc.collect(store).blobs == ()
    Containers(store.root).remove(record.id)
    assert str(layer.descriptor.digest) in gc.collect(store).blobs
