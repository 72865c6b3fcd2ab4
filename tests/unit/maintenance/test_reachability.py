"""What the roots need, on a fake store: tags, extra manifests and extra layers; an unreadable
root is a problem on the list, never an exception."""

from __future__ import annotations

from minibuild.maintenance.reachability import Reachable, reachable
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer
from minibuild.store.index import StoredImage

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer(name: str) -> Layer:
    return Layer(Descriptor(LAYER, Digest.of(f"blob {name}".encode()), 1),
                 Digest.of(f"tar {name}".encode()))


class FakeStore:
    """Manifests by digest: each an image and its config digest, or an error to raise."""

    def __init__(self) -> None:
        self.manifests: dict[Digest, tuple[Image, Digest] | Exception] = {}
        self.tagged: list[tuple[str, Descriptor]] = []
        self.kept: list[Descriptor] = []  # in the index without a name

    def add(self, name: str, *layers: Layer, tag: str | None = None,
            kept: bool = False) -> Descriptor:
        image = Image()
        for one in layers:
            image = image.append(one, History("COPY"))
        descriptor = Descriptor(MANIFEST, Digest.of(f"manifest {name}".encode()), 1)
        self.manifests[descriptor.digest] = (image, Digest.of(f"config {name}".encode()))
        if tag:
            self.tagged.append((tag, descriptor))
        if kept:
            self.kept.append(descriptor)
        return descriptor

    def images(self):
        return [StoredImage(d, (n,)) for n, d in self.tagged] + [StoredImage(d) for d in self.kept]

    def _get(self, digest: Digest) -> tuple[Image, Digest]:
        found = self.manifests[digest]
        if isinstance(found, Exception):
            raise found
        return found

    def load_image(self, descriptor: Descriptor) -> Image:
        return self._get(descriptor.digest)[0]

    def read_json(self, digest: Digest) -> dict:
        return {"config": {"digest": str(self._get(digest)[1])}}


def config_of(name: str) -> Digest:
    return Digest.of(f"config {name}".encode())


def test_add_layer_needs_its_blob_and_its_dir():
    found = Reachable()
    found.add_layer(layer("a"))
    assert found.blobs == {layer("a").descriptor.digest}
    assert found.diff_ids == {layer("a").diff_id}


def test_nothing_is_needed_in_an_empty_store():
    found = reachable(FakeStore())
    assert (found.blobs, found.diff_ids, found.problems) == (set(), set(), [])


def test_a_tag_needs_its_manifest_config_and_layers():
    store = FakeStore()
    app = store.add("app", layer("a"), layer("b"), tag="app:1")
    store.add("untagged", layer("c"))
    found = reachable(store)
    assert found.blobs == {app.digest, config_of("app"), layer("a").descriptor.digest,
                           layer("b").descriptor.digest}
    assert found.diff_ids == {layer("a").diff_id, layer("b").diff_id}


def test_an_image_kept_without_a_tag_is_a_root():
    store = FakeStore()
    dangling = store.add("dangling", layer("d"), kept=True)
    found = reachable(store)
    assert found.blobs == {dangling.digest, config_of("dangling"), layer("d").descriptor.digest}


def test_extra_manifests_and_layers_are_roots_too():
    store = FakeStore()
    extra = store.add("container", layer("c"))
    found = reachable(store, manifests=[extra], layers=[layer("cached")])
    assert found.diff_ids == {layer("c").diff_id, layer("cached").diff_id}
    assert {extra.digest, config_of("container"),
            layer("cached").descriptor.digest} <= found.blobs


def test_an_unreadable_manifest_is_a_problem_and_the_rest_is_still_found():
    store = FakeStore()
    broken = store.add("broken", layer("x"), tag="broken:1")
    store.manifests[broken.digest] = ValueError("truncated")
    store.add("good", layer("g"), tag="good:1")
    found = reachable(store)
    assert found.problems == [f"manifest {broken.digest}: truncated"]
    assert broken.digest in found.blobs  # what is there stays until fsck says more
    assert found.diff_ids == {layer("g").diff_id}


def test_a_layer_shared_by_two_images_is_needed_once():
    store = FakeStore()
    store.add("one", layer("base"), tag="one:1")
    store.add("two", layer("base"), layer("top"), tag="two:1")
    found = reachable(store)
    assert found.diff_ids == {layer("base").diff_id, layer("top").diff_id}
    assert len(found.blobs) == 2 + 2 + 2  # two manifests, two configs, two layer blobs
