"""Archives exchanged with podman, buildah and skopeo (each in temp storage, cleaned up)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from minibuild.store.layout import Store
from tests.conftest import write_context

pytestmark = pytest.mark.integration


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"needs {tool} (scripts/install-deps.sh installs it)")
    return path


@pytest.fixture
def containers_args():
    """podman/buildah on private storage (short paths: runroot must be under 50 characters)."""
    base = Path(tempfile.mkdtemp(prefix="mbc-"))
    try:
        yield ["--root", str(base / "root"), "--runroot", str(base / "run"), "--storage-driver", "vfs"]
    finally:
        subprocess.run(["umount", "-R", str(base / "root")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_podman_loads_docker_format_save(mb, tmp_path, containers_args):
    podman = need("podman")
    archive = tmp_path / "img.tar"
    mb.run("save", "--format", "docker", "-o", str(archive), "base:1.0")
    args = [podman, *containers_args]
    try:
        subprocess.run([*args, "load", "-i", str(archive)], check=True, capture_output=True, text=True)
        info = json.loads(subprocess.run([*args, "image", "inspect", "localhost/base:1.0"], check=True,
                                         capture_output=True, text=True).stdout)[0]
        ours = json.loads(mb.run("inspect", "base:1.0").stdout)[0]
        assert info["Config"]["Cmd"] == ours["Config"]["Cmd"]
        assert info["RootFS"]["Layers"] == ours["RootFS"]["Layers"]
    finally:
        subprocess.run([*args, "system", "reset", "--force"], capture_output=True)


def test_buildah_runs_the_command_of_a_saved_oci_archive(mb, tmp_path, containers_args):
    buildah = need("buildah")
    context = write_context(tmp_path / "ctx", 'FROM base:1.0\nRUN echo "made by minibuild" > /msg\n'
                                              'CMD ["cat", "/msg"]\n')
    mb.build(context, "-t", "msg:1")
    archive = tmp_path / "msg.tar"
    mb.run("save", "-o", str(archive), "msg:1")
    args = [buildah, *containers_args]
    container = None
    try:
        container = subprocess.run([*args, "from", "--pull-never", f"oci-archive:{archive}"], check=True,
                                   capture_output=True, text=True).stdout.strip().splitlines()[-1]
        cmd = json.loads(subprocess.run([*args, "inspect", container], check=True, capture_output=True,
                                        text=True).stdout)["OCIv1"]["config"]["Cmd"]
        out = subprocess.run([*args, "run", "--isolation", "chroot", container, "--", *cmd],
                             check=True, capture_output=True, text=True).stdout
        assert out == "made by minibuild\n"
    finally:
        if container:
            subprocess.run([*args, "rm", container], capture_output=True)
        subprocess.run([*args, "rm", "--all"], capture_output=True)


def test_skopeo_docker_archive_loads_and_serves_as_a_base(mb, empty_mb, tmp_path):
    skopeo = need("skopeo")
    archive = tmp_path / "skopeo.tar"
    # docker-archive has no zstd; our layers are gzip, so skopeo copies them as they are
    subprocess.run([skopeo, "copy", "-q", f"oci:{mb.root}/oci:base:1.0", f"docker-archive:{archive}:frompeer:3"],
                   check=True, capture_output=True)
    out = empty_mb.run("load", "-i", str(archive)).stdout
    assert "frompeer:3" in out
    context = write_context(tmp_path / "ctx", "FROM frompeer:3\nRUN busybox echo ok > /ok\n")
    empty_mb.build(context, "-t", "child:1")
    with Store.open(empty_mb.root) as store:
        image = store.load_image(store.resolve("child:1")[1])
        assert (store.ensure_layer(image.layers[-1]) / "ok").read_text() == "ok\n"


def test_skopeo_oci_archive_and_stdin_load(mb, empty_mb, tmp_path):
    skopeo = need("skopeo")
    archive = tmp_path / "oci.tar"
    subprocess.run([skopeo, "copy", "-q", f"oci:{mb.root}/oci:base:1.0", f"oci-archive:{archive}:peer:oci"],
                   check=True, capture_output=True)
    empty_mb.run("load", input=archive.read_bytes())
    ours = json.loads(mb.run("inspect", "base:1.0").stdout)[0]
    theirs = json.loads(empty_mb.run("inspect", "peer:oci").stdout)[0]
    assert theirs["RootFS"] == ours["RootFS"]


def test_save_to_a_pipe_is_read_by_skopeo(mb, tmp_path):
    skopeo = need("skopeo")
    data = subprocess.run(["python3", "-m", "minibuild", "--root", str(mb.root), "save", "base:1.0"],
                          check=True, capture_output=True).stdout
    (tmp_path / "piped.tar").write_bytes(data)
    info = json.loads(subprocess.run([skopeo, "inspect", f"oci-archive:{tmp_path / 'piped.tar'}"],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["Digest"] == json.loads(mb.run("inspect", "base:1.0").stdout)[0]["Descriptor"]["digest"]
