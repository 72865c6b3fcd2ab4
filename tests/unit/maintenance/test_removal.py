"""rmi's rules on a real store with fake container records: docker's answers for a tag, an ID,
several tags, a stopped and a running container."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from minibuild.errors import ImageNotFound
from minibuild.maintenance.removal import ImageConflict, remove_image
from minibuild.oci.image import History, Image
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store


@dataclass
class FakeContainer:
    short_id: str
    digest: object
    state: str


class FakeRecords:
    def __init__(self, *containers: FakeContainer) -> None:
        self.containers = containers

    def uses(self, digest):
        return [c for c in self.containers if c.digest == digest]

    def status(self, container):
        return container.state


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


def image(store: Store, step: str = "ENV a=b"):
    return store.write_image(Image().append(None, History(step)))


def names(store: Store) -> dict[str, tuple[str, ...]]:
    return {str(i.descriptor.digest): i.names for i in store.images()}


def test_rmi_of_one_of_two_tags_only_untags(store):
    desc = image(store)
    store.tag(Reference.parse("app:1"), desc)
    store.tag(Reference.parse("app:2"), desc)
    removal = remove_image(store, FakeRecords(), "app:1", force=False)
    assert (removal.untagged, removal.deleted) == (("app:1",), None)
    assert names(store) == {str(desc.digest): ("app:2",)}


def test_rmi_of_the_last_tag_deletes_the_image_and_nothing_else(store):
    desc, other = image(store), image(store, "ENV other=1")
    store.add_image(other)  # `d=$(build -q .)`: untagged, it must survive
    store.tag(Reference.parse("myrepo/app:2"), desc)
    removal = remove_image(store, FakeRecords(), "myrepo/app:2", force=False)
    assert removal.untagged == ("myrepo/app:2",)
    assert removal.deleted == str(store.image_id(desc))
    assert names(store) == {str(other.digest): ()}


def test_rmi_by_id_of_an_image_with_several_tags_needs_force(store):
    desc = image(store)
    store.tag(Reference.parse("a:1"), desc)
    store.tag(Reference.parse("b:1"), desc)
    short = store.image_id(desc).hex[:12]
    with pytest.raises(ImageConflict, match=f"unable to delete {short} \\(must be forced\\) - "
                                            "image is referenced in multiple repositories"):
        remove_image(store, FakeRecords(), short, force=False)
    removal = remove_image(store, FakeRecords(), short, force=True)
    assert sorted(removal.untagged) == ["a:1", "b:1"] and removal.deleted
    assert names(store) == {}


def test_rmi_by_id_of_an_untagged_image(store):
    desc = image(store)
    store.add_image(desc)
    removal = remove_image(store, FakeRecords(), str(store.image_id(desc)), force=False)
    assert (removal.untagged, removal.deleted) == ((), str(store.image_id(desc)))
    with pytest.raises(ImageNotFound):
        remove_image(store, FakeRecords(), store.image_id(desc).hex[:12], force=False)


def test_a_stopped_container_needs_force_and_then_its_image_goes(store):
    desc = image(store)
    store.tag(Reference.parse("app:1"), desc)
    records = FakeRecords(FakeContainer("c0ffee", desc.digest, "exited"))
    with pytest.raises(ImageConflict, match='unable to remove repository reference "app:1" '
                                            r"\(must force\) - container c0ffee is using"):
        remove_image(store, records, "app:1", force=False)
    removal = remove_image(store, records, "app:1", force=True)
    assert removal.deleted and names(store) == {}


def test_a_running_containers_image_stays_dangling_after_rmi_f_of_its_tag(store):
    desc = image(store)
    store.tag(Reference.parse("app:1"), desc)
    records = FakeRecords(FakeContainer("c0ffee", desc.digest, "running"))
    removal = remove_image(store, records, "app:1", force=True)
    assert (removal.untagged, removal.deleted) == (("app:1",), None)
    assert names(store) == {str(desc.digest): ()}
    with pytest.raises(ImageConflict, match=r"\(cannot be forced\) - image is being used by "
                                            "running container c0ffee"):
        remove_image(store, records, str(desc.digest), force=True)


def test_an_untagged_image_a_stopped_container_uses_needs_force(store):
    desc = image(store)
    store.add_image(desc)
    records = FakeRecords(FakeContainer("c0ffee", desc.digest, "exited"))
    with pytest.raises(ImageConflict, match="being used by stopped container c0ffee"):
        remove_image(store, records, str(desc.digest), force=False)
    assert remove_image(store, records, str(desc.digest), force=True).deleted
