"""docker's build flags on real builds: --iidfile, --metadata-file, --output's four types,
`build -`, `-f -` and the Containerfile default."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.conftest import write_context

pytestmark = pytest.mark.integration

BUILDFILE = "FROM base:1.0\nRUN echo made > /made.txt\n"


def test_iidfile_metadata_and_outputs(mb, tmp_path):
    context = write_context(tmp_path / "ctx", BUILDFILE)
    out = tmp_path / "out"
    mb.run("build", "-q", "-t", "app:1", "--label", "team=web", "--iidfile", str(tmp_path / "iid"),
           "--metadata-file", str(tmp_path / "meta.json"), "-o", str(out), str(context))
    image_id = (tmp_path / "iid").read_text()
    assert image_id == mb.run("images", "-q", "--no-trunc", "app:1").stdout.strip()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["containerimage.config.digest"] == image_id and meta["image.name"] == "app:1"
    labels = mb.run("inspect", "-f", "{{json .Config.Labels}}", "app:1").stdout
    assert json.loads(labels) == {"team": "web"}
    assert (out / "made.txt").read_text() == "made\n" and (out / "bin" / "busybox").exists()
    mb.run("build", "-q", "--output", f"type=tar,dest={tmp_path / 'fs.tar'}", str(context))
    with tarfile.open(tmp_path / "fs.tar") as tar:
        assert "made.txt" in tar.getnames()
    mb.run("build", "-q", "--output", f"type=oci,dest={tmp_path / 'oci.tar'}", str(context))
    with tarfile.open(tmp_path / "oci.tar") as tar:
        assert "index.json" in tar.getnames()
    mb.run("build", "-q", "--output", f"type=docker,dest={tmp_path / 'd.tar'}", str(context))
    with tarfile.open(tmp_path / "d.tar") as tar:
        assert "manifest.json" in tar.getnames()


def test_buildfile_from_stdin_and_containerfile_default(mb, tmp_path):
    image_id = mb.run("build", "-q", "-", input=BUILDFILE.encode()).stdout.strip()
    assert image_id.startswith("sha256:")
    context = write_context(tmp_path / "ctx", "unused", {"f.txt": "x"})
    (context / "Buildfile").unlink()
    (context / "Containerfile").write_text("FROM base:1.0\nCOPY f.txt /\n")
    assert mb.run("build", "-q", str(context)).returncode == 0
    out = mb.run("build", "-q", "-f", "-", str(context), input=b"FROM base:1.0\nCOPY f.txt /g\n")
    assert out.stdout.startswith("sha256:")
    refused = mb.run("build", "--pull=never", "-q", "-", check=False,
                     input=b"FROM localhost:1/nothing:1\n")
    assert refused.returncode != 0 and "not found" in refused.stderr
