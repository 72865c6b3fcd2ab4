"""ADD of remote sources as a prepared step (remoteadd.py through StepFactory.copy), with the
download faked: what is refused (BuildKit's dockerfile2llb rules), and what keys the step."""

from __future__ import annotations

import os

import pytest

from minibuild.build import remoteadd
from minibuild.errors import BuildError, BuildfileError
from minibuild.transfer import download as download_module
from minibuild.transfer.download import Download
from minibuild.build.context import BuildContext
from minibuild.build.steps import CopySource, StepFactory
from tests.unit.build.fakes import FakeRunner
from tests.unit.build.test_steps import CONFIG, SCOPE, context, instruction  # noqa: F401

URL = "https://example.com/dl/tool.tar.gz"


def factory(context) -> StepFactory:
    """A step factory whose scratch dirs are fresh each time (scratch/1, scratch/2, ...)."""
    def scratch(prefix):
        top = context.parent / "scratch"
        top.mkdir(exist_ok=True)
        path = top / str(len(list(top.iterdir())) + 1)
        path.mkdir()
        return path
    return StepFactory(FakeRunner(), BuildContext(context), lambda data: None, scratch, "host")


@pytest.fixture
def served(monkeypatch):
    """A fake download: writes `body` (0600) and answers its digest and Last-Modified."""
    body = {"data": b"payload"}

    def fake(url, target, proxies=None):
        with open(target, "xb") as f:
            f.write(body["data"])
        os.chmod(target, 0o600)
        return Download(f"sha256:{len(body['data']):064x}", len(body["data"]),
                        "Sun, 13 Sep 2020 12:26:40 GMT", 1_600_000_000)
    monkeypatch.setattr(download_module, "download", fake)
    return body


def test_the_step_is_keyed_on_the_content_name_and_last_modified(context, served):
    """BuildKit's http cache key: filename, checksum, Last-Modified."""
    step = factory(context).copy(instruction(f"ADD {URL} /opt/"), CONFIG, SCOPE, None)
    assert step.description["remote"] == [{"url": URL, "digest": f"sha256:{7:064x}", "name": "tool.tar.gz",
                                           "last_modified": "Sun, 13 Sep 2020 12:26:40 GMT"}]
    assert step.created_by == f"ADD {URL} /opt/" and step.reuse is None
    served["data"] = b"changed!"
    again = factory(context).copy(instruction(f"ADD {URL} /opt/"), CONFIG, SCOPE, None)
    assert again.description != step.description


def test_the_downloaded_file_lies_in_scratch_with_its_mtime(context, served):
    factory(context).copy(instruction(f"ADD {URL} /opt/"), CONFIG, SCOPE, None)
    path = context.parent / "scratch" / "1" / "0" / "tool.tar.gz"
    st = os.stat(path)
    assert (st.st_mode & 0o777, int(st.st_mtime), path.read_bytes()) == (0o600, 1_600_000_000, b"payload")


def test_a_checksum_mismatch_fails_at_the_line(context, served):
    with pytest.raises(BuildError, match=f"ADD {URL} failed: digest mismatch") as info:
        factory(context).copy(instruction(f"ADD --checksum=sha256:{'0' * 64} {URL} /x"), CONFIG, SCOPE, None)
    assert info.value.line == 2


@pytest.mark.parametrize("line, message", [
    (f"COPY {URL} /x", "source can't be a URL for COPY"),
    ("COPY git@github.com:user/repo.git /x", "source can't be a git ref for COPY"),
    (f"ADD {URL} notes.md /x/", "local and remote sources in one ADD"),
    ("ADD --checksum=sha256:" + "0" * 64 + " notes.md /x", "can't be specified for local sources"),
    (f"ADD --checksum=sha256:{'0' * 64} {URL} {URL}.2 /x/", "can't be specified for multiple sources"),
    ("ADD --unpack=maybe notes.md /x", "ADD --unpack: 'maybe' is not a boolean"),
    ("COPY --unpack=true notes.md /x", "unknown flag --unpack for COPY"),
    ("COPY --keep-git-dir=true notes.md /x", "unknown flag --keep-git-dir for COPY"),
])
def test_refusals(context, line, message):
    with pytest.raises(BuildfileError, match=message):
        factory(context).copy(instruction(line), CONFIG, SCOPE, None)


def test_add_from_a_stage_takes_no_url_and_no_checksum(context):
    stage = CopySource("build", "stage:k", ())
    with pytest.raises(BuildfileError, match="ADD --from takes paths"):
        factory(context).copy(instruction(f"ADD --from=build {URL} /x"), CONFIG, SCOPE, stage)
    with pytest.raises(BuildfileError, match="can't be specified for local sources"):
        factory(context).copy(instruction(f"ADD --from=build --checksum=sha256:{'0' * 64} /a /x"),
                              CONFIG, SCOPE, stage)


def test_unpack_false_keeps_a_local_archive_and_is_in_the_key(context):
    """Reference: `ADD --unpack=false my-archive.tar.gz .` adds the tar without unpacking."""
    plain = factory(context).copy(instruction("ADD notes.md /x"), CONFIG, SCOPE, None)
    kept = factory(context).copy(instruction("ADD --unpack=false notes.md /x"), CONFIG, SCOPE, None)
    assert "unpack" not in plain.description and kept.description["unpack"] is False


def test_unpack_flag_reads_a_bare_flag_as_true():
    assert remoteadd.unpack_flag(instruction("ADD --unpack a /b")) is True
    assert remoteadd.unpack_flag(instruction("ADD a /b")) is None
