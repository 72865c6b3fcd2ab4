"""What `load` lets in is what `fsck` accepts (issue 13, finding 9): descriptor sizes that are
wrong, negative or not whole numbers, layer media types unpack does not know (when the blob is
already stored, so nothing unpacks it), configs of another media type and history that does
not match the layers are refused at the gate, with one line, and the store stays clean.

Archives are generated here; the store first holds `existing:1`, whose layer blob the hostile
manifests reuse without shipping it.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import pytest

from tests.conftest import Minibuild
from tests.integration.test_hostile_archives import descriptor, layout, listing
from tests.unit.transfer.test_archive import file_entry, image_blobs, oci_archive, sha

pytestmark = pytest.mark.integration

KEEP = [file_entry("keep", b"k")]


def existing_image() -> tuple[dict[str, bytes], str, str]:
    return image_blobs(KEEP)


def rebuilt(change_manifest: Callable[[dict], None] = lambda m: None,
            change_config: Callable[[dict], None] = lambda c: None,
            change_entry: Callable[[dict], None] = lambda e: None,
            ship_layer: bool = True) -> bytes:
    """existing:1's image with its manifest, config and index entry changed in place."""
    blobs, manifest_hex, config_hex = existing_image()
    config = json.loads(blobs.pop(config_hex))
    change_config(config)
    config_bytes = json.dumps(config).encode()
    manifest = json.loads(blobs.pop(manifest_hex))
    manifest["config"].update(digest=f"sha256:{sha(config_bytes)}", size=len(config_bytes))
    change_manifest(manifest)
    manifest_bytes = json.dumps(manifest).encode()
    if not ship_layer:
        blobs.clear()
    blobs.update({sha(config_bytes): config_bytes, sha(manifest_bytes): manifest_bytes})
    entry = descriptor(manifest_bytes, annotations={"org.opencontainers.image.ref.name": "bad:1"})
    change_entry(entry)
    return layout(blobs, {"schemaVersion": 2, "manifests": [entry]})


def plus(key: str, amount) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        d[key] = d[key] + amount if amount is not None else -1
    return change


CASES = {
    "index entry size + 1": (lambda: rebuilt(change_entry=plus("size", 1)), "bytes, its descriptor says"),
    "index entry size negative": (lambda: rebuilt(change_entry=plus("size", None)), "size -1"),
    "index entry size 0.5 off": (lambda: rebuilt(change_entry=plus("size", 0.5)), "whole number"),
    "config size + 1": (lambda: rebuilt(change_manifest=lambda m: plus("size", 1)(m["config"])),
                        "bytes, its descriptor says"),
    "config size negative": (lambda: rebuilt(change_manifest=lambda m: plus("size", None)(m["config"])),
                             "size -1"),
    "config size float": (lambda: rebuilt(change_manifest=lambda m: plus("size", 0.0)(m["config"])),
                          "whole number"),
    "layer size + 1": (lambda: rebuilt(change_manifest=lambda m: plus("size", 1)(m["layers"][0])),
                       "bytes, its descriptor says"),
    "layer size - 1, blob stored": (lambda: rebuilt(change_manifest=lambda m: plus("size", -1)(m["layers"][0]),
                                                    ship_layer=False), "bytes, its descriptor says"),
    "layer size negative": (lambda: rebuilt(change_manifest=lambda m: plus("size", None)(m["layers"][0])),
                            "size -1"),
    "layer size 0.5 off": (lambda: rebuilt(change_manifest=lambda m: plus("size", 0.5)(m["layers"][0])),
                           "whole number"),
    "unknown layer media type, blob stored": (
        lambda: rebuilt(change_manifest=lambda m: m["layers"][0].update(mediaType="application/x-evil"),
                        ship_layer=False), "unknown layer media type"),
    "unknown layer media type, blob shipped": (
        lambda: rebuilt(change_manifest=lambda m: m["layers"][0].update(mediaType="text/plain")),
        "unknown layer media type"),
    "config media type not a config": (
        lambda: rebuilt(change_manifest=lambda m: m["config"].update(mediaType="application/json")),
        "config media type"),
    "history longer than the layers": (
        lambda: rebuilt(change_config=lambda c: c["history"].append({"created_by": "extra"})),
        "non-empty history entries"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Minibuild:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mb = Minibuild(tmp_path_factory.mktemp("rules") / "store")
    good = tmp_path_factory.mktemp("good") / "good.tar"
    blobs, manifest_hex, _ = existing_image()
    good.write_bytes(oci_archive(blobs, manifest_hex, ref="existing:1"))
    mb.run("load", "-i", str(good))
    return mb


@pytest.mark.parametrize("name", list(CASES))
def test_load_refuses_what_fsck_would_call_broken(store, tmp_path, name):
    build, needle = CASES[name]
    archive = tmp_path / "bad.tar"
    archive.write_bytes(build())
    before = listing(store.root)
    result = store.run("load", "-i", str(archive), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert listing(store.root) == before
    assert store.run("fsck", check=False).returncode == 0


def test_docker_media_types_load_and_pass_fsck(store, tmp_path):
    """Docker schema 2 names for the config and a gzip layer are the same bytes: both sides accept them."""
    def docker_types(m: dict) -> None:
        m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
        m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
        m["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    archive = tmp_path / "docker-types.tar"
    archive.write_bytes(rebuilt(change_manifest=docker_types))
    store.run("load", "-i", str(archive))
    result = store.run("fsck", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    store.run("rmi", "bad:1")
