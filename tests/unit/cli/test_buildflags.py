"""docker's build flags: --platform, --output, the Buildfile default, the refused flags, and
--iidfile / --metadata-file; builds with such flags are not answered from the memo."""

from __future__ import annotations

import json
from types import SimpleNamespace

import click
import pytest

from minibuild.build import memo
from minibuild.cli import buildflags
from minibuild.errors import MinibuildError
from tests.unit.cli.storefixture import run_cli


def test_platform_host_only():
    buildflags.check_platform(None)
    buildflags.check_platform(buildflags.host_platform())
    with pytest.raises(MinibuildError, match="not supported yet"):
        buildflags.check_platform("linux/s390x")


@pytest.mark.parametrize("text,parsed", [
    ("type=oci,dest=out.tar", ("oci", "out.tar")),
    ("type=docker,dest=-", ("docker", "-")),
    ("out", ("local", "out")),
    ("type=local,dest=out", ("local", "out")),
    ("type=tar,dest=x.tar", ("tar", "x.tar")),
    (None, None),
])
def test_output_forms(text, parsed):
    assert buildflags.parse_output(text) == parsed


def test_output_needs_dest_and_a_known_type():
    with pytest.raises(click.BadParameter):
        buildflags.parse_output("type=oci")
    with pytest.raises(click.BadParameter):
        buildflags.parse_output("type=registry,dest=x")


def test_iidfile_and_metadata_file(tmp_path):
    result = SimpleNamespace(image_id="sha256:" + "a" * 64, digest="sha256:" + "b" * 64)
    buildflags.write_files(str(tmp_path / "iid"), str(tmp_path / "meta.json"), result, ["app:1"])
    assert (tmp_path / "iid").read_text() == result.image_id
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "containerimage.config.digest": result.image_id,
        "containerimage.digest": result.digest, "image.name": "app:1"}


@pytest.mark.parametrize("args,error", [
    (["--add-host", "h:1.2.3.4"], "--add-host is not supported yet"),
    (["--progress", "rawjson"], "rawjson is not supported yet"),
    (["--platform", "linux/riscv64"], "not supported yet"),
])
def test_refused_flags_fail_before_building(monkeypatch, capsys, tmp_path, args, error):
    code, _, err = run_cli(monkeypatch, capsys, tmp_path / "store", "build", *args,
                           str(tmp_path))
    assert code == 1 and error in err


@pytest.mark.parametrize("arg", ["--iidfile=x", "--iidfile", "-o", "-oout", "--output=x",
                                 "--metadata-file", "--pull", "--pull=always", "-"])
def test_builds_writing_files_skip_the_memo(arg):
    assert memo.command(["build", arg, "."], "/", {}, "1") is None
    assert memo.command(["build", "-t", "x", "."], "/", {}, "1") is not None
