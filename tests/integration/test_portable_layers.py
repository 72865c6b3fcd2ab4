"""Portable layers: gzip by default, zstd on request, `push --compression` converting on the way,
and reproducible gzip (SOURCE_DATE_EPOCH) made by zlib, whose bytes do not depend on the CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib

import pytest

from tests.conftest import Minibuild, write_context
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def inspect(mb: Minibuild, ref: str) -> dict:
    return json.loads(mb.run("inspect", ref).stdout)[0]


def layer_types(mb: Minibuild, ref: str) -> list[str]:
    return [l["mediaType"] for l in inspect(mb, ref)["Manifest"]["layers"]]


def remote_manifest(host: str, repo_tag: str) -> dict:
    repo, _, tag = repo_tag.partition(":")
    import httpx

    response = httpx.get(f"http://{host}/v2/{repo}/manifests/{tag}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    response.raise_for_status()
    return response.json()


@pytest.fixture
def registry(tmp_path):
    with registry_server(tmp_path / "registry") as reg:
        yield reg


def test_push_converts_layers_when_asked_and_the_config_stays(mb, empty_mb, registry, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo zstd > /z\n")
    mb.build(ctx, "--compression", "zstd", "-t", "z:1")
    assert layer_types(mb, "z:1")[-1] == ZSTD

    mb.run("push", "--compression", "gzip", "z:1", f"{registry.host}/conv:gzip")
    manifest = remote_manifest(registry.host, "conv:gzip")
    assert {l["mediaType"] for l in manifest["layers"]} == {GZIP}
    assert manifest["config"]["digest"] == inspect(mb, "z:1")["Manifest"]["config"]["digest"]
    again = mb.run("push", "--compression", "gzip", "z:1", f"{registry.host}/conv:gzip")
    assert "0 uploaded" in again.stderr  # the same machine converts to the same bytes

    mb.run("push", "--compression", "zstd", "base:1.0", f"{registry.host}/conv:zstd")
    assert {l["mediaType"] for l in remote_manifest(registry.host, "conv:zstd")["layers"]} == {ZSTD}

    for tag in ("gzip", "zstd"):
        empty_mb.run("pull", f"{registry.host}/conv:{tag}")
    pulled = inspect(empty_mb, f"{registry.host}/conv:gzip")
    assert pulled["RootFS"] == inspect(mb, "z:1")["RootFS"]
    with_gzip = empty_mb.build(write_context(tmp_path / "child", f"FROM {registry.host}/conv:gzip\n"
                                             "RUN cat /z > /copy\n"), "-t", "child:1")
    assert with_gzip.returncode == 0


def test_push_without_compression_keeps_the_stored_manifest(mb, registry):
    pushed = mb.run("push", "-q", "base:1.0", f"{registry.host}/same:1").stdout.strip()
    assert pushed == inspect(mb, "base:1.0")["Descriptor"]["digest"]
    converted = mb.run("push", "-q", "--compression", "gzip", "base:1.0", f"{registry.host}/same:2")
    assert converted.stdout.strip() == pushed  # already gzip: nothing to convert


def test_source_date_epoch_layers_are_zlib_output(mb, tmp_path):
    """The reproducible path: each layer blob is exactly what zlib makes of its tar, so another
    machine (another CPU, where ISA-L would choose other matches) gets the same digest."""
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY a /a\nRUN echo x > /b\n", {"a": "a\n"})
    mb.build(ctx, "--source-date-epoch", "1700000000", "-t", "repro:1")
    for layer in inspect(mb, "repro:1")["Manifest"]["layers"][-2:]:
        blob = (mb.root / "oci/blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
        deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
        assert deflate.compress(zlib.decompress(blob, 31)) + deflate.flush() == blob


def test_save_docker_gzip_layers_load_in_skopeo_and_umoci(mb, tmp_path):
    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("needs skopeo and umoci")
    archive = tmp_path / "docker.tar"
    mb.run("save", "--format", "docker", "-o", str(archive), "base:1.0")
    layout = tmp_path / "layout"
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{layout}:b"], check=True,
                   capture_output=True)
    proc = subprocess.run(["umoci", "unpack", "--image", f"{layout}:b", str(tmp_path / "bundle")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bundle/rootfs/bin/busybox").exists()
