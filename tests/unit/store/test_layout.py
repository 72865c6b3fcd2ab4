"""The store (no root needed for blobs, tags and sessions), image values and references."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minibuild.oci.digest import Digest, chain_ids
from minibuild.errors import ImageNotFound, ReferenceError_, StoreError
from minibuild.oci.image import (Config, ContainerConfig, Descriptor, History, Image, Layer, Manifest,
                             canonical_json)
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store


def test_blob_writer_is_atomic_and_content_addressed(tmp_path):
    with Store.open(tmp_path) as store:
        with pytest.raises(RuntimeError):
            with store.blob_writer() as writer:
                writer.write(b"half")
                raise RuntimeError("crash")
        assert list(store.paths.blobs.iterdir()) == []
        assert [p.name for p in store.session_dir().iterdir()] == [".lock"]
        descriptor = store.put_bytes(b"hello", "text/plain")
        assert descriptor.digest == Digest.of(b"hello") and descriptor.size == 5
        assert store.blob_path(descriptor.digest).read_bytes() == b"hello"
        assert store.put_bytes(b"hello", "text/plain") == descriptor  # existing blob: no-op


def test_corrupt_blob_is_detected(tmp_path):
    with Store.open(tmp_path) as store:
        descriptor = store.put_bytes(b"{}", "application/json")
        store.blob_path(descriptor.digest).write_bytes(b"{ }")
        with pytest.raises(StoreError, match="corrupt"):
            store.read_blob(descriptor.digest)


def test_layout_files_and_tags(tmp_path):
    with Store.open(tmp_path) as store:
        image = Image().append(None, History("ENV a=b"))
        first = store.write_image(image)
        store.tag(Reference.parse("app:1.0"), first)
        store.tag(Reference.parse("app"), first)
        second = store.write_image(image.append(None, History("CMD x")))
        store.tag(Reference.parse("app:1.0"), second)
        assert [name for name, _ in store.tags()] == ["app:1.0", "app:latest"]
        assert store.resolve("app:1.0")[1].digest == second.digest
        assert store.resolve("app")[1].digest == first.digest
        assert store.resolve(f"app@{second.digest}")[1].digest == second.digest
        assert store.resolve(second.digest.hex[:8])[1].digest == second.digest
        with pytest.raises(ImageNotFound):
            store.resolve("nope:1")
        assert json.loads((tmp_path / "oci/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads((tmp_path / "oci/index.json").read_text())
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        loaded = store.load_image(second)
        assert [h.created_by for h in loaded.config.history] == ["ENV a=b", "CMD x"]
    assert list((tmp_path / "run").iterdir()) == []  # the session went away with close()


def test_dead_sessions_are_removed_live_ones_kept(tmp_path):
    Store.open(tmp_path).close()
    dead = tmp_path / "run" / "99999-dead"
    (dead / "upper").mkdir(parents=True)
    (dead / ".lock").touch()
    # A live session held by another process keeps its lock.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from minibuild.store.layout import Store\n"
        f"s = Store.open(Path({str(tmp_path)!r})); s.session_dir(); print('ready', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with Store.open(tmp_path):
            remaining = [p.name for p in (tmp_path / "run").iterdir()]
        assert "99999-dead" not in remaining and len(remaining) == 1
    finally:
        holder.kill()
        holder.wait()


def test_adopt_layer_keeps_the_first_copy(tmp_path):
    with Store.open(tmp_path) as store:
        diff_id = Digest.of(b"layer")
        for content in ("first", "second"):
            upper = store.scratch("upper")
            (upper / "f").write_text(content)
            path = store.adopt_layer(diff_id, upper)
            assert not upper.exists()
        assert (path / "f").read_text() == "first"
        assert path.name == diff_id.hex[:16]


def test_image_append_and_config_json_round_trip():
    layer = Layer(Descriptor("application/vnd.oci.image.layer.v1.tar+zstd", Digest.of(b"b"), 1),
                  Digest.of(b"d"))
    image = Image().append(layer, History("RUN x", created="2024-01-01T00:00:00Z"))
    image = image.append(None, History("ENV a=b"))
    image = image.with_container_config(ContainerConfig(env=("a=b",), cmd=("sh",),
                                                        exposed_ports=("80/tcp",)))
    data = image.config.to_json()
    assert data["rootfs"] == {"type": "layers", "diff_ids": [str(Digest.of(b"d"))]}
    assert data["history"][1] == {"created_by": "ENV a=b", "empty_layer": True}
    assert data["config"] == {"Env": ["a=b"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}}
    assert Config.from_json(json.loads(canonical_json(data))) == image.config
    assert [i for _, i in image.config.layer_history()] == [0, None]
    manifest = image.manifest(Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(b"c"), 2))
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_canonical_json_is_stable():
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == \
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()


def test_chain_ids():
    a, b = Digest.of(b"a"), Digest.of(b"b")
    assert chain_ids([a, b]) == [a, Digest.of(f"{a} {b}".encode())]


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


def test_digest_parse():
    d = Digest.of(b"x")
    assert Digest.parse(str(d)) == d
    with pytest.raises(ReferenceError_):
        Digest.parse("md5:abc")


def test_history_and_images_fast_commands_do_not_import_heavy_modules(tmp_path):
    code = ("import sys; from minibuild.cli import app as cli\n"
            "sys.argv = ['minibuild', '--root', sys.argv[1], 'images']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('lark', 'rich', 'zstandard', 'minibuild.build.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "MINIBUILD_ROOT": str(tmp_path)})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_untagged_image_resolves_by_full_digest_only(tmp_path):
    with Store.open(tmp_path) as store:
        descriptor = store.write_image(Image().append(None, History("ENV a=b")))
        assert store.resolve(str(descriptor.digest))[1].digest == descriptor.digest
        config_digest = Manifest.from_json(store.read_json(descriptor.digest)).config.digest
        with pytest.raises(ImageNotFound):
            store.resolve(str(config_digest))  # a config blob is not an image
        with pytest.raises(ImageNotFound):
            store.resolve(descriptor.digest.hex[:12])  # prefixes search tagged images only


def test_docker_layer_media_types_become_oci_names_in_new_manifests():
    gz = Descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", Digest.of(b"l"), 3)
    image = Image().append(Layer(gz, Digest.of(b"d")), History("FROM docker image"))
    manifest = image.manifest(Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(b"c"), 2))
    assert manifest.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert manifest.layers[0].digest == gz.digest


def test_a_digest_of_a_non_manifest_blob_is_not_an_image(tmp_path):
    with Store.open(tmp_path) as store:
        descriptor = store.write_image(Image().append(None, History("ENV a=b")))
        config_digest = Manifest.from_json(store.read_json(descriptor.digest)).config.digest
        layer = store.put_bytes(b"\x00not json", "application/octet-stream")
        for digest in (config_digest, layer.digest):
            with pytest.raises(ImageNotFound):
                store.resolve(f"app@{digest}")
        assert store.resolve(f"app@{descriptor.digest}")[1].digest == descriptor.digest
