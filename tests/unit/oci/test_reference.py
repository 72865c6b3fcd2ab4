"""Image references: `name[:tag][@digest]` parsed once, with docker's rules."""

from __future__ import annotations

import pytest

from minibuild.errors import ReferenceError_
from minibuild.oci.digest import Digest
from minibuild.oci.reference import Reference, names_registry


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
