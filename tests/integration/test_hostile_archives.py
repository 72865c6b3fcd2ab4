"""Malformed archives (issue 13, finding 10), generated here byte by byte and loaded through the
command line: each is a one-line error with a user's exit code (never 70, an internal error),
and the store is left exactly as it was.

The cases: an index whose `manifests` is not a list, whose entries are not objects or carry
annotations or a platform of the wrong type (top level and in a nested index); manifests and
configs of the wrong shape; docker's manifest.json with fields of the wrong type; and layer tars
(in both archive forms) whose PAX headers hold times, owners, link targets or xattr names the
kernel cannot take.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import Minibuild
from tests.unit.transfer.test_archive import file_entry, image_blobs, oci_archive, sha, tar_bytes

pytestmark = pytest.mark.integration

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
GOOD = [file_entry("etc/hello", b"hi\n")]


@dataclass(frozen=True)
class Case:
    """A hostile archive and a piece of the one line that must refuse it."""

    name: str
    build: Callable[[], bytes]
    needle: str


# -- builders ---------------------------------------------------------------------------------


def layout(blobs: dict[str, bytes], index: object) -> bytes:
    """An OCI layout tar holding these blobs and this (possibly malformed) index.json."""
    entries = [file_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    entries += [file_entry(f"blobs/sha256/{h}", b) for h, b in blobs.items()]
    return tar_bytes(entries + [file_entry("index.json", json.dumps(index).encode())])


def descriptor(data: bytes, media_type: str = MANIFEST, **extra) -> dict:
    return {"mediaType": media_type, "digest": f"sha256:{sha(data)}", "size": len(data), **extra}


def with_index(make_entries: Callable[[dict], object]) -> Callable[[], bytes]:
    """A good image under an index.json whose `manifests` is make_entries(good entry)."""
    def build() -> bytes:
        blobs, manifest_hex, _ = image_blobs(GOOD)
        return layout(blobs, {"schemaVersion": 2, "manifests": make_entries(descriptor(blobs[manifest_hex]))})
    return build


def with_nested_index(make_entries: Callable[[dict], object]) -> Callable[[], bytes]:
    """index.json -> a nested image index blob whose `manifests` is make_entries(good entry)."""
    def build() -> bytes:
        blobs, manifest_hex, _ = image_blobs(GOOD)
        nested = json.dumps({"schemaVersion": 2, "mediaType": INDEX,
                             "manifests": make_entries(descriptor(blobs[manifest_hex]))}).encode()
        blobs[sha(nested)] = nested
        return layout(blobs, {"schemaVersion": 2, "manifests": [descriptor(nested, INDEX)]})
    return build


def with_manifest(change: Callable[[dict], object]) -> Callable[[], bytes]:
    """A good image whose manifest JSON is change(manifest)."""
    def build() -> bytes:
        blobs, manifest_hex, _ = image_blobs(GOOD)
        manifest = json.dumps(change(json.loads(blobs.pop(manifest_hex)))).encode()
        blobs[sha(manifest)] = manifest
        return layout(blobs, {"schemaVersion": 2, "manifests": [descriptor(manifest)]})
    return build


def with_config(change: Callable[[dict], None]) -> Callable[[], bytes]:
    """A good image whose config JSON is changed in place by change(config)."""
    def build() -> bytes:
        blobs, manifest_hex, config_hex = image_blobs(GOOD)
        config = json.loads(blobs.pop(config_hex))
        change(config)
        config_bytes = json.dumps(config).encode()
        manifest = json.loads(blobs.pop(manifest_hex))
        manifest["config"].update(digest=f"sha256:{sha(config_bytes)}", size=len(config_bytes))
        manifest_bytes = json.dumps(manifest).encode()
        blobs.update({sha(config_bytes): config_bytes, sha(manifest_bytes): manifest_bytes})
        return layout(blobs, {"schemaVersion": 2, "manifests": [descriptor(manifest_bytes)]})
    return build


def docker(entries: Callable[[str, str], object], layer: list | None = None,
           index: object = None) -> Callable[[], bytes]:
    """A docker archive (old shape: <id>/layer.tar, <hex>.json) whose manifest.json is
    entries(config path, layer path); the layer tar holds `layer`; an index.json when given."""
    def build() -> bytes:
        layer_tar = tar_bytes(layer if layer is not None else GOOD)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer_tar)}"]},
                             "history": [{"created_by": "test"}]}).encode()
        members = [file_entry("aaa/layer.tar", layer_tar), file_entry(f"{sha(config)}.json", config),
                   file_entry("manifest.json", json.dumps(entries(f"{sha(config)}.json", "aaa/layer.tar")).encode())]
        if index is not None:
            members.append(file_entry("index.json", json.dumps(index).encode()))
        return tar_bytes(members)
    return build


def hostile_member(pax: dict[str, str], kind: bytes = tarfile.REGTYPE) -> list:
    """A layer of one member `f` whose PAX headers are `pax`."""
    info = tarfile.TarInfo("f")
    info.type, info.pax_headers = kind, dict(pax)
    return [(info, b"x" if kind == tarfile.REGTYPE else None)]


def oci_layer(layer: list) -> Callable[[], bytes]:
    def build() -> bytes:
        blobs, manifest_hex, _ = image_blobs(layer)
        return oci_archive(blobs, manifest_hex)
    return build


def good_docker_entry(config: str, layer: str) -> list:
    return [{"Config": config, "RepoTags": ["hostile:1"], "Layers": [layer]}]


LAYER_FIELDS = [
    ("mtime 1e30", {"mtime": "1e30"}, tarfile.REGTYPE, "modification time"),
    ("mtime -1e20", {"mtime": "-1e20"}, tarfile.REGTYPE, "modification time"),
    ("mtime nan", {"mtime": "nan"}, tarfile.REGTYPE, "modification time"),
    ("uid 2**40", {"uid": str(2**40)}, tarfile.REGTYPE, "uid"),
    ("uid -5", {"uid": "-5"}, tarfile.REGTYPE, "uid"),
    ("gid 2**32-1", {"gid": str(2**32 - 1)}, tarfile.REGTYPE, "gid"),
    ("NUL in symlink target", {"linkpath": "a\0b"}, tarfile.SYMTYPE, "NUL"),
    ("NUL in xattr name", {"SCHILY.xattr.user.a\0b": "v"}, tarfile.REGTYPE, "NUL"),
]

CASES = [
    Case("manifests is 5", with_index(lambda good: 5), "not an image index"),
    Case("manifests is an object", with_index(lambda good: {"a": good}), "not an image index"),
    Case("annotations as a list", with_index(lambda good: [{**good, "annotations": ["x"]}]), "annotations"),
    Case("annotation value not a string",
         with_index(lambda good: [{**good, "annotations": {"org.opencontainers.image.ref.name": 5}}]),
         "annotations"),
    Case("index entry a string", with_index(lambda good: ["x"]), "not a descriptor"),
    Case("index entry null", with_index(lambda good: [None]), "not a descriptor"),
    Case("platform a string", with_index(lambda good: [{**good, "platform": "linux/amd64"}]), "platform"),
    Case("digest a number", with_index(lambda good: [{**good, "digest": 5}]), "digest"),
    Case("digest not sha256", with_index(lambda good: [{**good, "digest": "md5:00"}]), "invalid digest"),
    Case("nested: manifests is 5", with_nested_index(lambda good: 5), "not an image index"),
    Case("nested: entry a string", with_nested_index(lambda good: ["x"]), "not a descriptor"),
    Case("nested: platform a string", with_nested_index(lambda good: [{**good, "platform": "linux"}]),
         "platform"),
    Case("nested: architecture a number",
         with_nested_index(lambda good: [{**good, "platform": {"os": "linux", "architecture": 5}}]),
         "platform"),
    Case("manifest a list", with_manifest(lambda m: [m]), "not an image manifest"),
    Case("manifest layers is 5", with_manifest(lambda m: {**m, "layers": 5}), "layers is not a list"),
    Case("manifest config a string", with_manifest(lambda m: {**m, "config": "x"}), "config is not a descriptor"),
    Case("layer annotations a list",
         with_manifest(lambda m: {**m, "layers": [{**m["layers"][0], "annotations": ["x"]}]}), "annotations"),
    Case("config rootfs a string", with_config(lambda c: c.update(rootfs="x")), "malformed"),
    Case("config history is 5", with_config(lambda c: c.update(history=5)), "malformed"),
    Case("config history entry a string", with_config(lambda c: c.update(history=["x"])), "malformed"),
    Case("config Env is 5", with_config(lambda c: c.update(config={"Env": 5})), "malformed"),
    Case("config Labels a list", with_config(lambda c: c.update(config={"Labels": ["a"]})), "malformed"),
    Case("docker: entry a string", docker(lambda c, l: ["x"]), "malformed"),
    Case("docker: RepoTags is 5", docker(lambda c, l: [{"Config": c, "RepoTags": 5, "Layers": [l]}]),
         "malformed"),
    Case("docker: Layers a string", docker(lambda c, l: [{"Config": c, "Layers": l}]), "malformed"),
    Case("docker: Config a number", docker(lambda c, l: [{"Config": 5, "Layers": [l]}]), "malformed"),
    Case("docker: index.json manifests is 5", docker(good_docker_entry, index={"manifests": 5}),
         "not an image index"),
    *(Case(f"oci: {label}", oci_layer(hostile_member(pax, kind)), needle)
      for label, pax, kind, needle in LAYER_FIELDS),
    *(Case(f"docker: {label}", docker(good_docker_entry, layer=hostile_member(pax, kind)), needle)
      for label, pax, kind, needle in LAYER_FIELDS),
]


# -- the test ---------------------------------------------------------------------------------


def listing(root: Path) -> dict[str, tuple]:
    """Every entry of the store (not live sessions or lock files): type, mode, size, content hash."""
    out = {}
    for base, dirs, files in os.walk(root):
        rel_base = os.path.relpath(base, root)
        if rel_base.split(os.sep)[0] in ("run", "locks"):
            continue
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) \
                and not os.path.islink(path) else None
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, digest)
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Minibuild:
    """A store that holds one good image (so there is something to keep unchanged)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mb = Minibuild(tmp_path_factory.mktemp("hostile") / "store")
    good = tmp_path_factory.mktemp("good") / "good.tar"
    blobs, manifest_hex, _ = image_blobs([file_entry("keep", b"k")])
    good.write_bytes(oci_archive(blobs, manifest_hex, ref="existing:1"))
    mb.run("load", "-i", str(good))
    return mb


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_malformed_archive_is_a_one_line_error_and_the_store_is_unchanged(loaded, tmp_path, case):
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(case.build())
    before = listing(loaded.root)
    result = loaded.run("load", "-i", str(archive), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.needle in lines[0], lines[0]
    assert listing(loaded.root) == before
