"""A registry as the build cache of short-lived CI runners: runner A (store 1) builds and exports
with --cache-to, runner B (an empty store 2) builds the same Buildfile and context with
--cache-from: no RUN runs and the image is byte-identical; a one-file change reuses what comes
before it. Two stores exporting at once both land; build --push pushes the tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO, Minibuild, write_context
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

BUILDFILE = """FROM {base}
RUN echo RAN-FIRST && echo one > /one
COPY a.txt /a.txt
RUN echo RAN-SECOND && cat /a.txt > /copy
COPY b.txt /b.txt
RUN echo RAN-THIRD && cat /b.txt >> /copy
"""


@pytest.fixture
def registry(tmp_path):
    with registry_server(tmp_path / "registry") as reg:
        yield reg


def digest(mb: Minibuild, ref: str) -> str:
    return json.loads(mb.run("inspect", ref).stdout)[0]["Descriptor"]["digest"]


def remote_tags(host: str, repo: str) -> set[str]:
    return set(httpx.get(f"http://{host}/v2/{repo}/tags/list").json().get("tags") or [])


def ran(proc) -> set[str]:
    """The RUN steps that executed: their output lines (the instruction text does not count)."""
    lines = {line.strip() for line in (proc.stdout + proc.stderr).splitlines()}
    return lines & {"RAN-FIRST", "RAN-SECOND", "RAN-THIRD"}


def context(tmp_path, name: str, base: str, b: str = "bee\n"):
    return write_context(tmp_path / name, BUILDFILE.format(base=base), {"a.txt": "ay\n", "b.txt": b})


def test_runner_b_reuses_runner_a_steps_and_gets_the_same_image(mb, empty_mb, registry, tmp_path):
    base = f"{registry.host}/base:1.0"
    mb.run("push", "-q", "base:1.0", base)
    cache = f"type=registry,ref={registry.host}/cache"
    a = mb.build(context(tmp_path, "a", base), "--cache-to", cache, "-t", "app:1")
    assert ran(a) == {"RAN-FIRST", "RAN-SECOND", "RAN-THIRD"} and "5 keys exported" in a.stderr
    assert len(remote_tags(registry.host, "cache")) == 5  # one tag per filesystem step
    b = empty_mb.build(context(tmp_path, "b", base), "--cache-from", cache, "-t", "app:1")
    assert ran(b) == set(), b.stderr  # no RUN executed on runner B
    assert "5 steps imported" in b.stderr
    assert digest(empty_mb, "app:1") == digest(mb, "app:1")

    changed = empty_mb.build(context(tmp_path, "c", base, b="changed\n"), "--cache-from", cache,
                             "--cache-to", cache, "-t", "app:2")
    assert ran(changed) == {"RAN-THIRD"}, changed.stderr
    assert "2 keys exported" in changed.stderr  # the changed COPY and the RUN after it
    again = Minibuild(tmp_path / "runner-c").build(context(tmp_path, "d", base, b="changed\n"),
                                                   "--cache-from", cache, "-t", "app:2")
    assert ran(again) == set()


def test_a_miss_or_an_unreachable_cache_just_runs_the_steps(mb, registry, tmp_path):
    mb.run("push", "-q", "base:1.0", f"{registry.host}/base:1.0")
    ctx = context(tmp_path, "a", f"{registry.host}/base:1.0")
    out = mb.build(ctx, "--cache-from", f"type=registry,ref={registry.host}/empty", "-t", "x:1")
    assert ran(out) == {"RAN-FIRST", "RAN-SECOND", "RAN-THIRD"} and "0 steps imported" in out.stderr
    bad = mb.build(ctx, "--cache-from", "type=local,src=/tmp", check=False)
    assert bad.returncode != 0 and "only type=registry" in bad.stderr and "Traceback" not in bad.stderr


def test_two_stores_export_at_once_and_both_keys_land(mb, base_store, registry, tmp_path):
    mb.run("push", "-q", "base:1.0", f"{registry.host}/base:1.0")
    base = f"{registry.host}/base:1.0"
    other = tmp_path / "store2"
    subprocess.run(["cp", "-a", str(base_store), str(other)], check=True)
    cache = f"type=registry,ref={registry.host}/shared,mode=max"
    jobs = [(mb.root, context(tmp_path, "one", base, b="one\n")), (other, context(tmp_path, "two", base, b="two\n"))]
    env = {**os.environ, "MINIBUILD_REGISTRIES_CONF": os.devnull}
    procs = [subprocess.Popen([sys.executable, "-m", "minibuild", "--root", str(root), "build",
                               "--progress", "plain", "--cache-to", cache, "-t", "t:1", str(ctx)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for root, ctx in jobs]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1].decode()[-2000:] for r in results]
    # 3 shared keys (first RUN, first COPY, second RUN) + 2 per runner after the differing COPY
    assert len(remote_tags(registry.host, "shared")) == 3 + 2 + 2


def test_build_push_and_output_push(mb, registry, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo pushed > /p\n")
    out = mb.build(ctx, "-t", f"{registry.host}/pushed:1", "--push")
    assert "Pushed" in out.stderr
    assert registry.requests("PUT", "/v2/pushed/manifests/1") == 1
    mb.build(ctx, "--output", f"type=image,name={registry.host}/pushed:2,push=true")
    assert registry.requests("PUT", "/v2/pushed/manifests/2") == 1
    assert remote_tags(registry.host, "pushed") == {"1", "2"}
