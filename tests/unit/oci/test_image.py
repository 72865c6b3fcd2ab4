"""Image values: config and manifest JSON, appending layers, canonical JSON."""

from __future__ import annotations

import json

from minibuild.oci.digest import Digest
from minibuild.oci.image import (Config, ContainerConfig, Descriptor, History, Image, Layer, Manifest,
                                 canonical_json)


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


def test_append_returns_a_new_image():
    base = Image()
    grown = base.append(None, History("ENV a=b"))
    assert base.config.history == () and len(grown.config.history) == 1


def test_canonical_json_is_stable():
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == \
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()


def test_docker_layer_media_types_become_oci_names_in_new_manifests():
    gz = Descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", Digest.of(b"l"), 3)
    image = Image().append(Layer(gz, Digest.of(b"d")), History("FROM docker image"))
    manifest = image.manifest(Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(b"c"), 2))
    assert manifest.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert manifest.layers[0].digest == gz.digest
