"""Digests: parsed once, printed as `sha256:<hex>`; chain ids."""

from __future__ import annotations

import hashlib

import pytest

from minibuild.errors import ReferenceError_
from minibuild.oci.digest import Digest, chain_ids


def test_digest_parse():
    d = Digest.of(b"x")
    assert Digest.parse(str(d)) == d
    with pytest.raises(ReferenceError_):
        Digest.parse("md5:abc")


@pytest.mark.parametrize("text", ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256", "a" * 64, ""])
def test_digest_parse_rejects(text):
    with pytest.raises(ReferenceError_):
        Digest.parse(text)


def test_digest_of_from_hash_and_short_agree():
    d = Digest.of(b"hello")
    assert d == Digest.from_hash(hashlib.sha256(b"hello"))
    assert str(d) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert d.short == d.hex[:12] and d.algorithm == "sha256"


def test_chain_ids():
    a, b = Digest.of(b"a"), Digest.of(b"b")
    assert chain_ids([a, b]) == [a, Digest.of(f"{a} {b}".encode())]
    assert chain_ids([]) == []
