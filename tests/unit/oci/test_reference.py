"""Image references: `name[:tag][@digest]` parsed once, with docker's rules."""

from __future__ import annotations

import pytest

from minibuild.errors import ReferenceError_
from minibuild.oci.digest import Digest
from minibuild.oci.reference import Reference, names_registry, same_image_name, split_name


@pytest.mark.parametrize("text,name,tag", [
    ("app", "app", "latest"), ("app:1.0", "app", "1.0"), ("localhost:5000/team/app:v2", "localhost:5000/team/app", "v2"),
    ("registry.example.com/a/b", "registry.example.com/a/b", "latest"),
])
def test_reference_parse(text, name, tag):
    ref = Reference.parse(text)
    assert (ref.name, ref.tag) == (name, tag)


@pytest.mark.parametrize("text", ["", "App:1", "app:", "app:bad!tag", "a//b", " app", "app@sha256:12"])
def test_reference_rejects(text):
    with pytest.raises(ReferenceError_):
        Reference.parse(text)


def test_a_digest_reference_has_no_default_tag_and_prints_back():
    digest = Digest.of(b"m")
    ref = Reference.parse(f"app@{digest}")
    assert (ref.tag, ref.digest) == (None, digest)
    assert str(ref) == f"app@{digest}" and Reference.parse("app").ref_name == "app:latest"


@pytest.mark.parametrize("name,registry", [("localhost/a", True), ("example.com/a", True),
                                           ("host:5000/a", True), ("team/app", False), ("app", False)])
def test_names_registry(name, registry):
    assert names_registry(name) is registry


@pytest.mark.parametrize("text,normalized,familiar", [
    ("debian", "docker.io/library/debian:latest", "debian:latest"),
    ("debian:12", "docker.io/library/debian:12", "debian:12"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/debian:12", "docker.io/library/debian:12", "debian:12"),
    ("index.docker.io/library/debian:12", "docker.io/library/debian:12", "debian:12"),
    ("docker.io/library/a/b:1", "docker.io/library/a/b:1", "library/a/b:1"),
    ("localhost/app:1", "localhost/app:1", "localhost/app:1"),
    ("127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app:1.0"),
    ("quay.io/team/tool", "quay.io/team/tool:latest", "quay.io/team/tool:latest"),
])
def test_docker_name_normalisation(text, normalized, familiar):
    ref = Reference.parse(text)
    assert str(ref.normalized()) == normalized
    assert ref.ref_name == familiar
    assert Reference.parse(ref.ref_name).normalized() == ref.normalized()


def test_docker_hub_names_split_into_registry_and_repository():
    assert (Reference.parse("debian").domain, Reference.parse("debian").path) == ("docker.io", "library/debian")
    assert split_name("Registry/app") == ("Registry", "app")  # an upper-case first part is a host
    assert split_name("index.docker.io/user/app") == ("docker.io", "user/app")


def test_same_image_name_ignores_spelling_only():
    assert same_image_name("debian:12", "docker.io/library/debian:12")
    assert same_image_name("index.docker.io/user/app", "user/app:latest")
    assert not same_image_name("debian:12", "debian:11")
    assert not same_image_name("quay.io/debian:12", "debian:12")
