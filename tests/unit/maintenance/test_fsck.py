"""fsck on hand-made stores (no root): corruption is an error, leftovers are garbage, repair is safe."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from minibuild.maintenance import fsck, layerdirs
from minibuild.build.cache import Cache, CacheEntry
from minibuild.oci.digest import Digest
from minibuild.errors import StoreError
from minibuild.oci.image import Descriptor, History, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.layer.snapshot import LayerSummary
from minibuild.store.layout import Store

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REPO = Path(__file__).resolve().parents[3]


def put_layer(store: Store, name: str, unpack: bool = True) -> Layer:
    """A one-file gzip layer in the store (blob, summary, and an unpacked dir)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = name.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    diff_id = Digest.of(raw.getvalue())
    descriptor = store.put_bytes(gzip.compress(raw.getvalue(), mtime=0), GZIP_LAYER)
    store.save_summary(diff_id, LayerSummary(((name, len(name)),), (), (), len(name)))
    if unpack:
        store.layer_path(diff_id).mkdir()
        (store.layer_path(diff_id) / name).write_text(name)
    return Layer(descriptor, diff_id)


def tag_image(store: Store, ref: str, *layers: Layer) -> Descriptor:
    """Store an image made of `layers` and tag it."""
    image = Image()
    for layer in layers:
        image = image.append(layer, History(f"COPY {layer.diff_id.short}"))
    descriptor = store.write_image(image)
    store.tag(Reference.parse(ref), descriptor)
    return descriptor


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


def wheres(findings) -> list[str]:
    return sorted(f.where for f in findings)


def test_a_store_holding_only_tagged_images_is_clean(store):
    tag_image(store, "app:1", put_layer(store, "a"), put_layer(store, "b", unpack=False))
    report = fsck.check(store)
    assert report.findings == () and report.ok
    assert (report.blobs, report.tags, report.layer_dirs) == (4, 1, 1)


def test_a_corrupt_layer_blob_is_an_error_for_the_blob_and_the_tag(store):
    layer = put_layer(store, "a")
    tag_image(store, "app:1", layer)
    store.blob_path(layer.descriptor.digest).write_bytes(b"flipped")
    report = fsck.check(store)
    assert not report.ok
    assert wheres(report.errors) == [f"blob {layer.descriptor.digest}", "tag app:1: layer 0"]
    assert "hash to sha256:" in report.errors[0].message


def test_missing_blobs_and_wrong_sizes_are_errors(store):
    layer = put_layer(store, "a")
    manifest = tag_image(store, "app:1", layer)
    store.blob_path(layer.descriptor.digest).unlink()
    store.tag(Reference.parse("short:1"), Descriptor(manifest.media_type, manifest.digest, 3))
    messages = [f.line() for f in fsck.check(store).errors]
    assert any("tag app:1: layer 0: missing blob" in m for m in messages), messages
    assert any(m.startswith("error: tag short:1: blob") and "the descriptor says 3" in m
               for m in messages), messages


def test_a_manifest_that_does_not_parse_is_reported_and_nothing_is_called_unreferenced(store):
    stray = put_layer(store, "stray")
    bogus = store.put_bytes(b'{"layers": 7}', "application/vnd.oci.image.manifest.v1+json")
    store.tag(Reference.parse("bad:1"), bogus)
    report = fsck.check(store)
    assert [f.where for f in report.errors] == ["tag bad:1"]
    assert not report.complete_roots
    assert report.garbage == ()  # without every root, `stray` may be needed: not judged
    fsck.repair(store, report)
    assert store.has_blob(stray.descriptor.digest)


def test_leftovers_of_a_killed_build_are_garbage_and_repair_removes_only_them(store):
    kept = put_layer(store, "kept")
    tag_image(store, "app:1", kept)
    orphan = put_layer(store, "orphan")  # a step that finished before the build was killed
    temp = store.paths.oci / ".index.json.4242.abcd1234"
    temp.write_text("{")
    (store.paths.layers / "not-a-layer").mkdir()
    report = fsck.check(store)
    assert report.ok  # an interrupted build makes the store bigger, not wrong
    assert wheres(report.garbage) == sorted([
        f"blob {orphan.descriptor.digest}", f"layers/{store.layer_path(orphan.diff_id).name}",
        f"meta/{orphan.diff_id.hex}.json", "layers/not-a-layer", "oci/.index.json.4242.abcd1234"])
    removed = fsck.repair(store, report)
    assert len(removed) == 5
    assert fsck.check(store).findings == ()
    assert store.has_blob(kept.descriptor.digest) and store.layer_path(kept.diff_id).is_dir()
    assert not store.has_blob(orphan.descriptor.digest) and not temp.exists()


def test_repair_removes_a_corrupt_blob_so_a_rebuild_can_write_it_again(store):
    blob = store.put_bytes(b"config", "application/json")
    store.blob_path(blob.digest).write_bytes(b"other")
    report = fsck.check(store)
    assert [f.where for f in report.errors] == [f"blob {blob.digest}"]
    fsck.repair(store, report)
    assert fsck.check(store).ok
    assert store.put_bytes(b"config", "application/json") == blob
    assert store.read_blob(blob.digest) == b"config"


def test_cache_entries_keep_their_layers_and_dangling_ones_are_errors(store):
    cached = put_layer(store, "cached")
    gone = put_layer(store, "gone")
    cache = Cache(store)
    cache.put("a" * 64, CacheEntry(cached, History("RUN x")))
    cache.put("b" * 64, CacheEntry(gone, History("RUN y")))
    cache.put("c" * 64, CacheEntry(None, History("ENV z=1", empty_layer=True)))
    (cache.dir / f"{'d' * 64}.json").write_text("{not json")
    store.blob_path(gone.descriptor.digest).unlink()
    report = fsck.check(store)
    assert report.cache_entries == 4
    assert wheres(report.errors) == [f"cache entry {'b' * 64}", f"cache entry {'d' * 64}"]
    assert not any(str(cached.descriptor.digest) in f.where for f in report.findings)
    fsck.repair(store, report)
    assert sorted(key for key, _ in cache.entries()) == ["a" * 64, "c" * 64]
    assert fsck.check(store).ok


def test_a_summary_that_does_not_parse_is_an_error_repair_deletes(store):
    layer = put_layer(store, "a")
    tag_image(store, "app:1", layer)
    meta = store.paths.meta / f"{layer.diff_id.hex}.json"
    meta.write_text('{"files": 1}')
    report = fsck.check(store)
    assert [f.where for f in report.errors] == [f"meta/{meta.name}"]
    fsck.repair(store, report)
    assert fsck.check(store).ok
    assert store.layer_summary(layer).content_size == 1  # recomputed from the blob


def test_an_unreadable_index_is_an_error_and_repair_keeps_every_blob(store):
    layer = put_layer(store, "a")
    tag_image(store, "app:1", layer)
    (store.paths.oci / "index.json").write_text("{")
    report = fsck.check(store)
    assert [f.where for f in report.errors] == ["index.json"]
    fsck.repair(store, report)
    assert store.has_blob(layer.descriptor.digest) and store.layer_path(layer.diff_id).is_dir()


def test_lock_exclusive_refuses_while_another_process_has_the_store_open(tmp_path):
    with Store.open(tmp_path) as first, Store.open(tmp_path) as second:
        with pytest.raises(StoreError, match="in use by another minibuild process"):
            second.lock_exclusive()
        first.close()
        second.lock_exclusive()


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minibuild", "--root", str(root), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_exit_status_and_json(tmp_path):
    root = tmp_path / "store"
    with Store.open(root) as store:
        layer = put_layer(store, "a")
        tag_image(store, "app:1", layer)
        put_layer(store, "orphan")
    clean = run_cli(root, "fsck")
    assert clean.returncode == 0, clean.stderr
    assert "0 errors, 3 unreferenced entries" in clean.stdout
    store.blob_path(layer.descriptor.digest).write_bytes(b"x")
    broken = run_cli(root, "fsck", "--format", "json")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    data = json.loads(broken.stdout)
    assert not data["ok"] and {f["severity"] for f in data["findings"]} == {"error", "garbage"}
    repaired = run_cli(root, "fsck", "--repair")
    assert repaired.returncode == 1  # the tag still names a blob that is gone
    assert f"removed: blob {layer.descriptor.digest}" in repaired.stdout
    assert "error: tag app:1: layer 0: missing blob" in repaired.stdout


def test_cli_repair_refuses_while_the_store_is_in_use(tmp_path):
    with Store.open(tmp_path / "store"):
        result = run_cli(tmp_path / "store", "fsck", "--repair")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the store ") and "in use" in result.stderr


# -- fsck --deep: layer dirs against their blobs -----------------------------------------------


def unpacked_layer(store: Store, name: str) -> Layer:
    """A one-file layer whose dir is made by minibuild's own unpack (ensure_layer)."""
    layer = put_layer(store, name, unpack=False)
    store.ensure_layer(layer)
    return layer


class Progress:
    """Records what the deep check tells."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, index, total, layer) -> None:
        self.calls.append(("begin", index, total, layer.diff_id))

    def end(self, comparison) -> None:
        self.calls.append(("end", comparison.ok))


def test_deep_check_passes_a_clean_store_and_finds_a_damaged_dir_the_cheap_check_misses(store):
    tagged = unpacked_layer(store, "a")
    tag_image(store, "app:1", tagged)
    cached = unpacked_layer(store, "b")  # only a cache entry needs it: still checked
    Cache(store).put("a" * 64, CacheEntry(cached, History("RUN b")))
    progress = Progress()
    report = fsck.check(store, deep=True, progress=progress)
    assert report.ok and report.findings == ()
    assert (report.deep_layers, report.deep_bytes) == (2, 2)
    first, second = sorted((tagged, cached), key=lambda l: store.layer_path(l.diff_id).name)
    assert progress.calls == [("begin", 1, 2, first.diff_id), ("end", True),
                              ("begin", 2, 2, second.diff_id), ("end", True)]
    (store.layer_path(cached.diff_id) / "b").write_text("B")  # same size, other bytes
    assert fsck.check(store).ok  # the cheap check never reads layer dirs
    report = fsck.check(store, deep=True)
    (finding,) = report.errors
    assert finding.where == f"layer {cached.diff_id}" and finding.deep
    assert finding.path == store.layer_path(cached.diff_id)
    assert "differs from its blob in 1 path(s)" in finding.message
    assert finding.details == ("b: content differs (same size)",)


def test_deep_repair_removes_only_the_damaged_dir_and_it_is_unpacked_again(store):
    good, bad = unpacked_layer(store, "good"), unpacked_layer(store, "bad")
    tag_image(store, "app:1", good, bad)
    good_inode = (store.layer_path(good.diff_id) / "good").stat().st_ino
    os.chmod(store.layer_path(bad.diff_id) / "bad", 0o600)
    report = fsck.check(store, deep=True)
    assert [f.details for f in report.errors] == [("bad: mode 0600, the blob says 0644",)]
    removed = fsck.repair(store, report)
    assert [f.path for f in removed] == [store.layer_path(bad.diff_id)]
    assert not store.layer_path(bad.diff_id).exists()
    assert (store.layer_path(good.diff_id) / "good").stat().st_ino == good_inode
    after = fsck.recheck(store, report)
    assert after.ok and after.deep_layers == 2
    store.ensure_layer(bad)  # what the next build does with a layer it needs
    assert fsck.check(store, deep=True).ok


def test_recheck_keeps_a_deep_finding_repair_could_not_remove(store):
    layer = unpacked_layer(store, "a")
    tag_image(store, "app:1", layer)
    (store.layer_path(layer.diff_id) / "extra").write_text("x")
    report = fsck.check(store, deep=True)
    assert not fsck.recheck(store, report).ok  # nothing removed: the finding stands
    fsck.repair(store, report)
    assert fsck.recheck(store, report).ok


def test_cli_deep_reports_details_in_text_and_json_and_repairs(tmp_path):
    root = tmp_path / "store"
    with Store.open(root) as store:
        layer = unpacked_layer(store, "a")
        tag_image(store, "app:1", layer)
    clean = run_cli(root, "fsck", "--deep")
    assert clean.returncode == 0, clean.stderr
    assert "deep: compared 1 layer dirs with their blobs" in clean.stdout
    short = layer.diff_id.short
    assert f"deep 1/1: layer {short}" in clean.stderr and ": ok (1 entries, 1B)" in clean.stderr
    (store.layer_path(layer.diff_id) / "a").unlink()
    text = run_cli(root, "fsck", "--deep")
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert f"error: layer {layer.diff_id}: unpacked dir layers/" in text.stdout
    assert "\n    a: missing (the blob has a regular file)\n" in text.stdout
    assert "`minibuild fsck --deep --repair` removes the damaged layer dirs" in text.stdout
    data = json.loads(run_cli(root, "fsck", "--deep", "--format", "json").stdout)
    assert not data["ok"] and data["deep_layers"] == 1
    (finding,) = data["findings"]
    assert finding["details"] == ["a: missing (the blob has a regular file)"]
    repaired = run_cli(root, "fsck", "--deep", "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert f"removed: layer {layer.diff_id}" in repaired.stdout
    assert not store.layer_path(layer.diff_id).exists()
    plain = run_cli(root, "fsck")
    assert plain.returncode == 0 and "deep" not in plain.stdout and plain.stderr == ""


def test_deep_check_reports_a_blob_unpack_refuses_and_an_io_error_without_crashing(store, monkeypatch):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("../a"), io.BytesIO(b""))
    layer = Layer(store.put_bytes(gzip.compress(raw.getvalue(), mtime=0), GZIP_LAYER),
                  Digest.of(raw.getvalue()))
    tag_image(store, "bad:1", layer)
    store.layer_path(layer.diff_id).mkdir()  # how it got there is the question the error raises
    (finding,) = fsck.check(store, deep=True).errors
    assert "is not a layer unpack accepts" in finding.message and "climbs out" in finding.message
    assert finding.path is None  # nothing is deleted for it

    def failing(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(layerdirs, "compare_layer", failing)
    (finding,) = fsck.check(store, deep=True).errors
    assert "cannot compare layers/" in finding.message and "Input/output error" in finding.message
    assert finding.path is None
