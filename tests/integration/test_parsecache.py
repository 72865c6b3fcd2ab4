"""The parse cache in real builds: an unchanged Buildfile is not parsed again (lark is not even
imported), whether read from a file or stdin and with --no-cache; prune --cache drops it."""

from __future__ import annotations

import pytest

from minibuild.build import parsecache
from tests.conftest import write_context

pytestmark = pytest.mark.integration

BUILDFILE = """FROM base:1.0
COPY hello.txt /srv/hello.txt
RUN cat /srv/hello.txt > /srv/copy.txt
ENV GREETING=hello
CMD ["cat", "/srv/copy.txt"]
"""
# The build memo would answer before the parser is reached; PYTHONPROFILEIMPORTTIME lists every
# module the process imports on stderr.
TRACE = {"MINIBUILD_MEMO": "0", "PYTHONPROFILEIMPORTTIME": "1"}


def imported(stderr: str) -> set[str]:
    """The modules an `-X importtime` trace shows."""
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    assert lines, "no import trace: the check below would prove nothing"
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


def build(mb, context, *args: str, input: bytes | None = None):
    return mb.run("build", "--progress", "plain", "-t", "p:1", *args, str(context),
                  env=TRACE, input=input)


def test_a_rebuild_with_an_unchanged_buildfile_does_not_import_lark(mb, tmp_path):
    context = write_context(tmp_path / "ctx", BUILDFILE, {"hello.txt": "hello\n"})
    first = build(mb, context)
    assert "lark" in imported(first.stderr)
    assert len(list(parsecache.cache_dir(mb.root).glob("*.json"))) >= 1
    second = build(mb, context)
    assert "lark" not in imported(second.stderr) and "minibuild.build.parsecache" in imported(second.stderr)
    assert second.stderr.count("CACHED") == 2
    third = build(mb, context, "--no-cache")  # it caches parsing, not steps
    assert "lark" not in imported(third.stderr) and "CACHED" not in third.stderr
    (context / "Buildfile").write_text(BUILDFILE.replace("GREETING=hello", "GREETING=bye"))
    assert "lark" in imported(build(mb, context).stderr)


def test_a_buildfile_on_stdin_uses_the_cache_too(mb, tmp_path):
    context = write_context(tmp_path / "ctx", "", {"hello.txt": "hello\n"})
    (context / "Buildfile").unlink()
    assert "lark" in imported(build(mb, context, "-f", "-", input=BUILDFILE.encode()).stderr)
    again = build(mb, context, "-f", "-", input=BUILDFILE.encode())
    assert "lark" not in imported(again.stderr)


def test_a_buildfile_error_is_reported_at_its_line_every_time(mb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY only-one\n")
    for _ in range(2):
        out = mb.run("build", str(context), env={"MINIBUILD_MEMO": "0"}, check=False)
        assert out.returncode != 0 and f"{context}/Buildfile:2:1" in out.stderr


def test_prune_cache_drops_the_parse_cache(mb, tmp_path):
    context = write_context(tmp_path / "ctx", BUILDFILE, {"hello.txt": "hello\n"})
    mb.build(context, "-t", "p:1")
    assert list(parsecache.cache_dir(mb.root).glob("*.json"))
    mb.run("prune", "--cache")
    assert list(parsecache.cache_dir(mb.root).glob("*.json")) == []
    assert "lark" in imported(build(mb, context).stderr)
