"""The build cache: what reuses a layer, what runs again, and digests that stay the same."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.conftest import write_context

pytestmark = pytest.mark.integration

BUILDFILE = """FROM base:1.0
ARG FLAVOUR=plain
ENV MODE=$FLAVOUR
WORKDIR /app
COPY src/ ./src/
RUN echo "$MODE $(cat src/a.txt)" > /app/out.txt
LABEL stage=final
CMD ["cat", "/app/out.txt"]
"""


def steps(output: str) -> dict[str, bool]:
    """Instruction text -> whether it was CACHED, from plain progress output."""
    found, current = {}, None
    for line in output.splitlines():
        match = re.match(r"\[[^\]]+ \d+/\d+\] (.*)", line)
        if match:
            current = match.group(1)
        elif current and line.strip().startswith("done in"):
            found[current] = line.rstrip().endswith("CACHED")
            current = None
    return found


def cached_runs(output: str) -> dict[str, bool]:
    return {k: v for k, v in steps(output).items() if k.split()[0] in ("RUN", "COPY", "WORKDIR", "ADD")}


@pytest.fixture
def project(tmp_path):
    return write_context(tmp_path / "ctx", BUILDFILE, {"src/a.txt": "alpha\n", "src/b.txt": "beta\n",
                                                      "notes.md": "not copied\n"})


def test_unchanged_rebuild_hits_every_step_and_keeps_the_digest(mb, project):
    first = mb.build(project, "-t", "app:1")
    assert not any(cached_runs(first.stderr).values())
    second = mb.build(project, "-t", "app:1")
    assert all(cached_runs(second.stderr).values()) and len(cached_runs(second.stderr)) == 3
    digests = [json.loads(mb.run("inspect", "app:1").stdout)[0]["Descriptor"]["digest"]]
    mb.build(project, "-t", "app:2")
    digests.append(json.loads(mb.run("inspect", "app:2").stdout)[0]["Descriptor"]["digest"])
    assert digests[0] == digests[1]
    assert not any(cached_runs(mb.build(project, "--no-cache").stderr).values())


def test_touch_does_not_bust_but_one_byte_does_even_with_same_size_and_mtime(mb, project):
    mb.build(project)
    path = project / "src/a.txt"
    os.utime(path, (time.time() + 100, time.time() + 100))
    assert all(cached_runs(mb.build(project).stderr).values())
    before = os.stat(path)
    path.write_text("alphA\n")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime
    result = cached_runs(mb.build(project, "-t", "changed:1").stderr)
    assert result == {"WORKDIR /app": True, "COPY src/ ./src/": False,
                      'RUN echo "$MODE $(cat src/a.txt)" > /app/out.txt': False}


def test_files_outside_the_selection_or_ignored_do_not_bust(mb, project):
    mb.build(project)
    (project / "notes.md").write_text("edited\n")
    assert all(cached_runs(mb.build(project).stderr).values())
    (project / ".dockerignore").write_text("src/b.txt\n")
    assert not cached_runs(mb.build(project).stderr)["COPY src/ ./src/"]  # b.txt left the selection
    (project / "src/b.txt").write_text("ignored now\n")
    assert all(cached_runs(mb.build(project).stderr).values())


def test_build_arg_and_env_changes_bust_the_run(mb, project):
    mb.build(project)
    out = cached_runs(mb.build(project, "--build-arg", "FLAVOUR=spicy").stderr)
    assert out["WORKDIR /app"] is False  # ENV MODE changed: every later step's key changed
    assert all(cached_runs(mb.build(project, "--build-arg", "FLAVOUR=spicy").stderr).values())


def test_metadata_change_reuses_earlier_layers(mb, project):
    mb.build(project)
    (project / "Buildfile").write_text(BUILDFILE.replace("LABEL stage=final", "LABEL stage=other"))
    out = mb.build(project, "-t", "meta:1").stderr
    assert all(cached_runs(out).values())
    labels = json.loads(mb.run("inspect", "meta:1").stdout)[0]["Config"]["Labels"]
    assert labels == {"stage": "other"}


def test_cache_survives_processes_and_points_only_at_complete_layers(mb, project):
    mb.build(project)
    entries = list((mb.root / "cache/steps").glob("*.json"))
    assert entries
    for path in entries:
        layer = json.loads(path.read_text())["layer"]
        if layer:
            blob = mb.root / "oci/blobs/sha256" / layer["descriptor"]["digest"].split(":")[1]
            assert blob.stat().st_size == layer["descriptor"]["size"]
