"""push/pull against a real docker-registry on 127.0.0.1, checked with skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from minibuild.transfer import remote as transfer
from minibuild.store.layout import Store
from tests.conftest import Minibuild, write_context
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path):
    with registry_server(tmp_path / "registry") as reg:
        yield reg


def manifest_digest(mb: Minibuild, ref: str) -> str:
    return json.loads(mb.run("inspect", ref).stdout)[0]["Descriptor"]["digest"]


def test_push_pull_round_trip_and_second_push_uploads_nothing(mb, empty_mb, registry, tmp_path):
    target = f"{registry.host}/app:1.0"
    pushed = mb.run("push", "base:1.0", target).stdout.strip()
    assert registry.requests("PUT", "/v2/app/blobs/uploads/") == 3  # two layers and the config
    again = mb.run("push", "base:1.0", target)
    assert registry.requests("PUT", "/v2/app/blobs/uploads/") == 3
    assert registry.requests("POST", "/v2/app/blobs/uploads/") == 3
    assert "0 uploaded, 3 already there" in again.stderr

    pulled = empty_mb.run("pull", target).stdout.strip()
    assert pulled == pushed == manifest_digest(mb, "base:1.0")
    assert manifest_digest(empty_mb, target) == pushed
    out = empty_mb.build(write_context(tmp_path / "ctx", f"FROM {target}\nRUN echo pulled > /p\nCMD cat /p\n"),
                         "-t", "on-pulled:1")
    assert out.returncode == 0

    if shutil.which("skopeo"):
        layout = tmp_path / "skopeo-oci"
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}",
                        f"oci:{layout}:app"], check=True, capture_output=True)
        info = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{layout}:app"], check=True,
                                         capture_output=True, text=True).stdout)
        assert info["Digest"] == pushed and len(info["Layers"]) == 2


def test_pull_only_missing_layers_and_mount_across_repositories(mb, registry):
    mb.run("push", "base:1.0", f"{registry.host}/one:1")
    with Store.open(mb.root) as store:
        transfer.pull(store, f"{registry.host}/one:1")  # now the store knows the blobs live in `one`
    gets = registry.requests("GET", "/blobs/sha256:")
    assert gets == 0  # every blob was already in the store
    result = mb.run("push", f"{registry.host}/one:1", f"{registry.host}/two:1")
    assert "3 mounted" in result.stderr
    assert registry.requests("PUT", "/v2/two/blobs/uploads/") == 0


def test_chunked_upload_and_pinned_digest_pull(mb, empty_mb, registry):
    with Store.open(mb.root) as store:
        result = transfer.push(store, "base:1.0", f"{registry.host}/chunky:1", chunk_size=64 << 10)
    assert len(result.uploaded) == 3
    assert registry.requests("PATCH", "/v2/chunky/blobs/uploads/") > 3  # the big layer went in pieces
    pinned = f"{registry.host}/chunky@{result.digest}"
    assert empty_mb.run("pull", pinned).stdout.strip() == str(result.digest)
    assert manifest_digest(empty_mb, pinned) == str(result.digest)


def test_image_pushed_by_skopeo_is_pulled_and_used_in_from(mb, empty_mb, registry, tmp_path):
    if not shutil.which("skopeo"):
        pytest.skip("needs skopeo")
    target = f"{registry.host}/fromskopeo:2"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-compress-format", "gzip",
                    "--dest-compress", f"oci:{mb.root}/oci:base:1.0", f"docker://{target}"],
                   check=True, capture_output=True)
    context = write_context(tmp_path / "ctx", f"FROM {target}\nRUN echo via-skopeo > /msg\n")
    empty_mb.build(context, "-t", "child:1")
    assert manifest_digest(empty_mb, target)  # pulled and tagged by the build
    with Store.open(empty_mb.root) as store:
        image = store.load_image(store.resolve("child:1")[1])
        top = store.ensure_layer(image.layers[-1])
    assert (top / "msg").read_text() == "via-skopeo\n"


def test_pull_errors_are_one_line(mb, empty_mb, registry):
    missing = empty_mb.run("pull", f"{registry.host}/nope:1", check=False)
    assert missing.returncode == 1 and "MANIFEST_UNKNOWN" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = mb.run("push", "base:1.0", check=False)
    assert bad.returncode != 0 and "names no registry" in bad.stderr
