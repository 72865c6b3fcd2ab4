"""The tags (index.json): tag, untag, list, and finding an image by name, digest or id."""

from __future__ import annotations

import json
import threading

import pytest

from minibuild.errors import ImageNotFound, StoreError
from minibuild.oci.image import History, Image, Manifest
from minibuild.oci.reference import Reference
from minibuild.store import images
from minibuild.store.cas import Blobs
from minibuild.store.index import TagIndex
from minibuild.store.paths import StorePaths


@pytest.fixture
def paths(tmp_path):
    paths = StorePaths.at(tmp_path / "store")
    for d in (paths.blobs, paths.locks, paths.run):
        d.mkdir(parents=True)
    return paths


@pytest.fixture
def blobs(paths):
    return Blobs(paths, lambda: paths.run)


@pytest.fixture
def index(paths, blobs):
    made = TagIndex(paths, blobs)
    made.create()
    return made


def image_with(blobs, *steps: str):
    image = Image()
    for step in steps:
        image = image.append(None, History(step))
    return images.write_image(blobs, image)


def test_create_writes_the_layout_files_once(paths, index):
    assert json.loads(paths.oci_layout.read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(paths.index.read_text()) == {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    index.tag(Reference.parse("app"), image_with(index.blobs, "ENV a=b"))
    index.create()  # an existing index is kept
    assert [name for name, _ in index.tags()] == ["app:latest"]


def test_tag_replaces_and_keeps_names_sorted(index, paths):
    first, second = image_with(index.blobs, "ENV a=b"), image_with(index.blobs, "ENV a=c")
    index.tag(Reference.parse("zed:1"), first)
    index.tag(Reference.parse("app:1.0"), first)
    index.tag(Reference.parse("app:1.0"), second)
    assert [(name, desc.digest) for name, desc in index.tags()] == [
        ("app:1.0", second.digest), ("zed:1", first.digest)]
    entry = json.loads(paths.index.read_text())["manifests"][0]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "app:1.0"}


def test_untag_removes_only_the_name(index):
    desc = image_with(index.blobs, "ENV a=b")
    index.tag(Reference.parse("app:1"), desc)
    index.tag(Reference.parse("app:2"), desc)
    assert index.untag("app:1") is True and index.untag("app:1") is False
    assert [name for name, _ in index.tags()] == ["app:2"]
    assert index.blobs.has_blob(desc.digest)  # blobs stay for gc to judge


def test_docker_hub_names_are_stored_familiar_and_found_by_any_spelling(index, paths):
    desc = image_with(index.blobs, "ENV a=b")
    index.tag(Reference.parse("docker.io/library/debian:12"), desc)
    entry = json.loads(paths.index.read_text())["manifests"][0]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "debian:12"}
    for spelling in ("debian:12", "docker.io/debian:12", "index.docker.io/library/debian:12"):
        name, found = index.resolve(spelling)
        assert (name, found.digest) == ("debian:12", desc.digest)


def test_a_long_name_an_older_store_wrote_reads_familiar_and_is_replaced(index, paths):
    old, new = image_with(index.blobs, "ENV a=b"), image_with(index.blobs, "ENV a=c")
    entry = old.to_json() | {"annotations": {"org.opencontainers.image.ref.name": "docker.io/user/app:1"}}
    paths.index.write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    assert [name for name, _ in index.tags()] == ["user/app:1"]
    assert index.resolve("user/app:1")[1].digest == old.digest
    index.tag(Reference.parse("user/app:1"), new)
    assert [(name, d.digest) for name, d in index.tags()] == [("user/app:1", new.digest)]
    assert index.untag("docker.io/user/app:1") and index.tags() == []


def test_resolve_by_name_digest_and_id_prefix(index):
    first, second = image_with(index.blobs, "ENV a=b"), image_with(index.blobs, "CMD x")
    index.tag(Reference.parse("app"), first)
    index.tag(Reference.parse("app:2"), second)
    name, found = index.resolve("app")
    assert (name, found.digest, found.annotation("org.opencontainers.image.ref.name")) == \
        ("app:latest", first.digest, "app:latest")
    assert index.resolve("app:2")[1].digest == second.digest
    assert index.resolve(f"other@{second.digest}") == (f"other@{second.digest}", second)  # untagged
    assert index.resolve(second.digest.hex[:8])[0] == "app:2"
    config = Manifest.from_json(index.blobs.read_json(first.digest)).config.digest
    assert index.resolve(f"sha256:{config.hex[:10]}")[0] == "app:latest"  # the image id
    with pytest.raises(ImageNotFound, match="image not found: nope:1"):
        index.resolve("nope:1")
    with pytest.raises(ImageNotFound):
        index.resolve(second.digest.hex[:3])  # too short to be an id prefix


def test_a_manifest_outside_the_index_resolves_by_full_digest_only(index):
    descriptor = image_with(index.blobs, "ENV a=b")
    assert index.resolve(str(descriptor.digest))[1].digest == descriptor.digest
    assert index.resolve(descriptor.digest.hex)[1].digest == descriptor.digest
    config_digest = Manifest.from_json(index.blobs.read_json(descriptor.digest)).config.digest
    with pytest.raises(ImageNotFound):
        index.resolve(str(config_digest))  # a config blob is not an image
    with pytest.raises(ImageNotFound):
        index.resolve(descriptor.digest.hex[:12])  # prefixes search the index's images only


def test_a_digest_of_a_non_manifest_blob_is_not_an_image(index):
    descriptor = image_with(index.blobs, "ENV a=b")
    config_digest = Manifest.from_json(index.blobs.read_json(descriptor.digest)).config.digest
    layer = index.blobs.put_bytes(b"\x00not json", "application/octet-stream")
    for digest in (config_digest, layer.digest):
        with pytest.raises(ImageNotFound):
            index.resolve(f"app@{digest}")
    assert index.resolve(f"app@{descriptor.digest}")[1].digest == descriptor.digest


def test_an_unreadable_index_is_a_store_error(index, paths):
    paths.index.write_text("{")
    with pytest.raises(StoreError, match="cannot read"):
        index.tags()


def test_concurrent_tags_all_land(paths, blobs, index):
    desc = image_with(blobs, "ENV a=b")

    def tag_many(worker: int) -> None:
        mine = TagIndex(paths, blobs)  # its own lock file opens: contends like another process
        for i in range(15):
            mine.tag(Reference.parse(f"app{worker}:{i}"), desc)

    threads = [threading.Thread(target=tag_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(index.tags()) == 60


# -- images without a tag (docker's dangling <none> images) ---------------------------------------

def entries(paths) -> list[tuple[str | None, str]]:
    return [((e.get("annotations") or {}).get("org.opencontainers.image.ref.name"), e["digest"])
            for e in json.loads(paths.index.read_text())["manifests"]]


def test_add_keeps_an_untagged_image_once(index, paths):
    desc = image_with(index.blobs, "ENV a=b")
    assert index.add(desc) is True and index.add(desc) is False
    assert entries(paths) == [(None, str(desc.digest))]
    assert [(i.names, i.dangling) for i in index.images()] == [((), True)]
    index.tag(Reference.parse("app:1"), desc)  # a tag replaces the untagged entry
    assert entries(paths) == [("app:1", str(desc.digest))]
    assert index.add(desc) is False


def test_a_tag_moving_away_leaves_its_old_image_untagged(index, paths):
    first, second = image_with(index.blobs, "ENV a=b"), image_with(index.blobs, "ENV a=c")
    assert index.tag(Reference.parse("app:1"), first) is None
    assert index.tag(Reference.parse("app:1"), first) is None  # same image: nothing replaced
    assert index.tag(Reference.parse("app:1"), second).digest == first.digest
    assert entries(paths) == [(None, str(first.digest)), ("app:1", str(second.digest))]
    index.tag(Reference.parse("keep:1"), second)
    index.tag(Reference.parse("app:1"), first)  # second keeps its other tag: no untagged entry
    assert sorted(entries(paths), key=str) == sorted(
        [("app:1", str(first.digest)), ("keep:1", str(second.digest))], key=str)


def test_untag_of_the_last_tag_keeps_the_image_and_forget_drops_it(index, paths):
    desc = image_with(index.blobs, "ENV a=b")
    index.tag(Reference.parse("app:1"), desc)
    index.tag(Reference.parse("app:2"), desc)
    index.untag("app:1")
    assert entries(paths) == [("app:2", str(desc.digest))]
    index.untag("app:2")
    assert entries(paths) == [(None, str(desc.digest))]
    index.tag(Reference.parse("app:3"), desc)
    assert index.forget(desc.digest) == ("app:3",)
    assert entries(paths) == [] and index.forget(desc.digest) == ()


def test_untagged_images_resolve_by_id_digest_and_unique_prefixes(index):
    desc = image_with(index.blobs, "ENV a=b")
    index.add(desc)
    image_id = index.config_digest(desc)
    for text in (str(image_id), image_id.hex, image_id.hex[:12], f"sha256:{image_id.hex[:12]}",
                 str(desc.digest), desc.digest.hex[:12]):
        assert index.find(text).descriptor.digest == desc.digest, text
        assert index.find(text).tag is None
    assert index.resolve(image_id.hex[:12]) == (str(desc.digest), desc)


def test_find_says_which_tag_the_text_named(index):
    desc = image_with(index.blobs, "ENV a=b")
    index.tag(Reference.parse("app:1"), desc)
    assert index.find("app:1").tag == "app:1"
    assert index.find(index.config_digest(desc).hex[:8]).tag is None
    assert index.resolve(index.config_digest(desc).hex[:8])[0] == "app:1"


def test_an_ambiguous_id_prefix_is_refused(index):
    seen = {}
    for i in range(5000):  # two image IDs sharing 4 hex digits come within a few hundred
        desc = image_with(index.blobs, f"ENV n={i}")
        prefix = index.config_digest(desc).hex[:4]
        if prefix in seen:
            break
        seen[prefix] = desc
    index.add(seen[prefix])
    index.add(desc)
    with pytest.raises(ImageNotFound, match="ambiguous"):
        index.find(prefix)
    assert index.find(index.config_digest(desc).hex[:12]).descriptor.digest == desc.digest
