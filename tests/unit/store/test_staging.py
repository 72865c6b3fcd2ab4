"""The gate's checks of outside JSON: descriptors, indexes, manifests and configs of the wrong
shape are refused with an IntakeError naming what and where, never a TypeError."""

from __future__ import annotations

import pytest

from minibuild.oci.image import host_architecture
from minibuild.store.staging import (IntakeError, choose_platform, config_of, descriptor, index_entries,
                                     manifest_of)

DIGEST = "sha256:" + "a" * 64
GOOD = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 7}


def test_a_good_descriptor_is_read():
    desc = descriptor({**GOOD, "annotations": {"k": "v"}, "platform": {"os": "linux"}}, "entry")
    assert (desc.size, desc.annotation("k"), str(desc.digest)) == (7, "v", DIGEST)


@pytest.mark.parametrize("data,needle", [
    ("x", "not a descriptor"),
    (None, "not a descriptor"),
    ({**GOOD, "mediaType": 5}, "mediaType"),
    ({**GOOD, "digest": 5}, "digest"),
    ({**GOOD, "digest": "sha256:xyz"}, "invalid digest"),
    ({**GOOD, "size": -5}, "size -5"),
    ({**GOOD, "size": 7.0}, "size 7.0"),
    ({**GOOD, "size": "7"}, "size '7'"),
    ({**GOOD, "size": True}, "size True"),
    ({k: v for k, v in GOOD.items() if k != "size"}, "size None"),
    ({**GOOD, "annotations": ["x"]}, "annotations"),
    ({**GOOD, "annotations": {"k": 5}}, "annotations"),
    ({**GOOD, "platform": "linux"}, "platform"),
    ({**GOOD, "platform": {"architecture": ["amd64"]}}, "platform"),
])
def test_a_malformed_descriptor_is_refused(data, needle):
    with pytest.raises(IntakeError, match=needle) as info:
        descriptor(data, "index entry 3")
    assert info.value.message.startswith("index entry 3")


@pytest.mark.parametrize("index", [5, [], {"manifests": 5}, {"manifests": {"a": GOOD}}, {}])
def test_an_index_without_a_list_of_manifests_is_refused(index):
    with pytest.raises(IntakeError, match="not an image index"):
        index_entries(index, "index x")


def test_choose_platform_picks_this_host_and_names_what_there_is():
    other = {**GOOD, "digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "other"}}
    mine = {**GOOD, "platform": {"os": "linux", "architecture": host_architecture()}}
    assert str(choose_platform({"manifests": [other, mine]}, "i").digest) == DIGEST
    with pytest.raises(IntakeError, match="linux/other"):
        choose_platform({"manifests": [other]}, "i")
    with pytest.raises(IntakeError, match="platform"):
        choose_platform({"manifests": [{**GOOD, "platform": "linux"}]}, "i")


@pytest.mark.parametrize("data,needle", [
    ([], "not an image manifest"),
    ({"schemaVersion": 1, "config": GOOD}, "not an image manifest"),
    ({"schemaVersion": 2, "config": "x"}, "config is not a descriptor"),
    ({"schemaVersion": 2, "config": GOOD, "layers": 5}, "layers is not a list"),
    ({"schemaVersion": 2, "config": GOOD, "layers": [{**GOOD, "size": -1}]}, "layer 0: size -1"),
    ({"schemaVersion": 2, "config": GOOD, "annotations": []}, "annotations"),
])
def test_a_malformed_manifest_is_refused(data, needle):
    with pytest.raises(IntakeError, match=needle):
        manifest_of(data, "manifest m")


@pytest.mark.parametrize("data", [
    [], {"rootfs": "x"}, {"rootfs": {"diff_ids": 5}}, {"rootfs": {"diff_ids": ["md5:1"]}},
    {"history": 5}, {"history": ["x"]}, {"config": 5}, {"config": {"Env": 5}},
    {"config": {"Env": "A=b"}}, {"config": {"Cmd": "sh"}}, {"config": {"Labels": ["a"]}},
    {"config": {"User": 0}},
])
def test_a_malformed_config_is_refused(data):
    with pytest.raises(IntakeError, match="config c is malformed"):
        config_of(data, "config c")
