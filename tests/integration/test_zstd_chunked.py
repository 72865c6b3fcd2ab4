"""push --compression zstd:chunked against a real docker-registry: every layer is plain zstd to
the `zstd` tool (decompressing to the config's DiffID), its TOC and tar-split (read back by the
footer and the annotations, as containers/storage does) describe the tar exactly, and skopeo and
podman (temporary storage) copy and pull it."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
import zstandard

from minibuild.layer import zstdchunked
from tests.conftest import write_context
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

BUILDFILE = """FROM base:1.0
RUN mkdir -p /data/sub && head -c 300000 /bin/busybox > /data/big && echo small > /data/sub/s \\
    && ln -s big /data/link && ln /data/sub/s /data/hard && : > /data/empty && chmod 4755 /data/big
RUN rm /data/sub/s && echo again > /data/again
"""


@pytest.fixture
def registry(tmp_path):
    with registry_server(tmp_path / "registry") as reg:
        yield reg


def blob(host: str, repo: str, digest: str) -> bytes:
    return httpx.get(f"http://{host}/v2/{repo}/blobs/{digest}").content


def frames(data: bytes, start: int, end: int) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data[start:end])


def check_layer(data: bytes, annotations: dict, diff_id: str) -> None:
    tar = subprocess.run(["zstd", "-dc"], input=data, check=True, capture_output=True).stdout
    assert f"sha256:{hashlib.sha256(tar).hexdigest()}" == diff_id  # plain zstd to the zstd tool
    footer = data[-64:]
    assert footer[56:] == b"GNUlInUx"
    toc_offset, toc_len, toc_raw, kind, split_offset, split_len, split_raw = (
        int.from_bytes(footer[i:i + 8], "little") for i in range(0, 56, 8))
    assert annotations[zstdchunked.MANIFEST_KEY] == f"{toc_offset}:{toc_len}:{toc_raw}:{kind}" and kind == 1
    assert annotations[zstdchunked.TARSPLIT_KEY] == f"{split_offset}:{split_len}:{split_raw}"
    toc_blob = data[toc_offset:toc_offset + toc_len]
    assert annotations[zstdchunked.CHECKSUM_KEY] == f"sha256:{hashlib.sha256(toc_blob).hexdigest()}"
    toc = json.loads(zstandard.ZstdDecompressor().decompress(toc_blob, max_output_size=toc_raw))
    split_blob = data[split_offset:split_offset + split_len]
    assert toc["version"] == 1 and toc["tarSplitDigest"] == f"sha256:{hashlib.sha256(split_blob).hexdigest()}"
    files = {}
    for entry in toc["entries"]:
        if entry["type"] == "reg" and entry.get("size"):
            contents = frames(data, entry["offset"], entry["endOffset"])  # one file, fetched alone
            assert len(contents) == entry["size"]
            assert entry["digest"] == f"sha256:{hashlib.sha256(contents).hexdigest()}"
            files[entry["name"]] = contents
    rebuilt = b""  # tar-split's segments plus each file's contents give the tar back
    lines = zstandard.ZstdDecompressor().decompress(split_blob, max_output_size=split_raw).splitlines()
    for position, line in enumerate(lines):
        item = json.loads(line)
        assert item["position"] == position
        if item["type"] == 2:
            rebuilt += base64.b64decode(item["payload"])
        elif item.get("size"):
            contents = files[item["name"]]
            assert int.from_bytes(base64.b64decode(item["payload"]), "big") == zstdchunked.crc64_update(0, contents)
            rebuilt += contents
    assert rebuilt == tar
    return toc


def test_push_zstd_chunked_layers(mb, registry, tmp_path):
    mb.build(write_context(tmp_path / "ctx", BUILDFILE), "-t", "app:1")
    target = f"{registry.host}/chunked/app:1"
    mb.run("push", "--compression", "zstd:chunked", "app:1", target)
    manifest = httpx.get(f"http://{registry.host}/v2/chunked/app/manifests/1",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    config = json.loads(blob(registry.host, "chunked/app", manifest["config"]["digest"]))
    tocs = []
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        tocs.append(check_layer(blob(registry.host, "chunked/app", layer["digest"]), layer["annotations"], diff_id))
    kinds = {(e["name"], e["type"]) for e in tocs[-2]["entries"]}
    assert {("data/", "dir"), ("data/big", "reg"), ("data/link", "symlink")} <= kinds
    assert {name for name, kind in kinds if kind == "hardlink"} & {"data/hard", "data/sub/s"}
    big = next(e for e in tocs[-2]["entries"] if e["name"] == "data/big")
    assert big["mode"] == 0o4755 and big["size"] == 300000
    assert any(e["name"].endswith(".wh.s") for e in tocs[-1]["entries"])  # whiteouts are entries too

    again = mb.run("push", "--compression", "zstd:chunked", "app:1", f"{registry.host}/chunked/app:2")
    assert "0 uploaded" in again.stderr  # converted to the same bytes again: all already there

    if shutil.which("skopeo"):
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}",
                        f"oci:{tmp_path / 'layout'}:app"], check=True, capture_output=True)
    if shutil.which("podman"):
        run = Path(tempfile.mkdtemp(prefix="mb-podman-"))  # podman wants a runroot under 50 characters
        podman = ["podman", "--root", str(tmp_path / "podman"), "--runroot", str(run),
                  "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        try:
            subprocess.run([*podman, "pull", "-q", "--tls-verify=false", target], check=True, capture_output=True)
            root = Path(subprocess.run([*podman, "image", "mount", target], check=True, capture_output=True,
                                       text=True).stdout.strip())
            assert (root / "data/again").read_text() == "again\n" and (root / "data/hard").read_text() == "small\n"
            assert not (root / "data/sub/s").exists() and (root / "data/big").stat().st_mode & 0o4000
        finally:
            subprocess.run([*podman, "image", "unmount", "-a"], capture_output=True)
            subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True)
            shutil.rmtree(run, ignore_errors=True)

