"""Review of RUN --mount on real builds: a from= that names a registry image the store lacks,
and a from= written with a variable."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import write_context
from tests.integration.test_run_mount import added
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration


def test_a_mount_from_and_a_copy_from_a_registry_image_pull_it_as_from_does(mb, empty_mb, tmp_path):
    with registry_server(tmp_path / "registry") as registry:
        tools = write_context(tmp_path / "tools", "FROM base:1.0\nRUN echo tool > /tool\n")
        mb.build(tools, "-t", "tools:1")
        mb.run("push", "base:1.0", f"{registry.host}/base:1.0")
        mb.run("push", "tools:1", f"{registry.host}/tools:1")
        ctx = write_context(tmp_path / "ctx", f"FROM {registry.host}/base:1.0\n"
                            f"RUN --mount=from={registry.host}/tools:1,source=/tool,target=/t cp /t /got\n"
                            f"COPY --from={registry.host}/tools:1 /tool /copied\n")
        empty_mb.build(ctx, "-t", "app:1")
    empty_mb.run("tag", f"{registry.host}/base:1.0", "base:1.0")  # for added()
    files = added(empty_mb, "app:1")[1]
    assert files == {"got": "tool\n", "copied": "tool\n"}
    images = json.loads(empty_mb.run("images", "--format", "json").stdout)
    assert {(i["repository"], i["tag"]) for i in images} >= {(f"{registry.host}/tools", "1")}


def test_a_mount_from_named_by_an_arg_runs_that_stage(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "ARG PICK=build\n"
                        "FROM base:1.0 AS build\nRUN echo built > /out\n"
                        "FROM base:1.0 AS other\nRUN echo other > /out\n"
                        "FROM base:1.0\nARG PICK\nRUN --mount=from=$PICK,source=/out,target=/in cp /in /got\n")
    out = mb.build(ctx, "-t", "a:1").stderr
    assert "[build " in out and "[other " not in out
    assert added(mb, "a:1")[1] == {"got": "built\n"}
    mb.build(ctx, "--build-arg", "PICK=other", "-t", "a:2")
    assert added(mb, "a:2")[1] == {"got": "other\n"}


def test_a_cache_mount_from_a_stage_starts_as_its_source_path_and_then_keeps_its_own(mb, tmp_path):
    """The reference's cache table: `from` is the "build stage, context, or image name to use
    as a base of the cache mount", `source` the "subpath in the `from` to mount". BuildKit
    (mounts.go getRefCacheDir) keys the cache by id and the from snapshot and makes it a
    mutable snapshot on top of it: a new cache holds the stage's files, later writes stay in
    the cache (never in a layer, never in the stage), and a changed stage is a new cache."""
    buildfile = """FROM base:1.0 AS seed
RUN mkdir -p /deps && echo {word} > /deps/seeded && ln -s /etc /deps/etc-link
FROM base:1.0
RUN --mount=type=cache,target=/c,from=seed,source=/deps sh -c 'ls /c > /listing; cat /c/seeded > /got; echo run >> /c/log; wc -l < /c/log > /runs'
"""
    ctx = write_context(tmp_path / "ctx", buildfile.format(word="one"))
    mb.build(ctx, "-t", "cf:1")
    files = added(mb, "cf:1")[1]
    assert files["listing"].split() == ["etc-link", "seeded"] and files["got"] == "one\n"
    assert files["runs"].strip() == "1"
    mb.build(ctx, "--no-cache", "-t", "cf:2")  # the same stage: the same cache, with its log
    assert added(mb, "cf:2")[1]["runs"].strip() == "2"
    assert "log" not in mb.run("run", "--rm", "cf:2", "ls", "/").stdout.split()
    ctx.joinpath("Buildfile").write_text(buildfile.format(word="two"))
    mb.build(ctx, "-t", "cf:3")  # a changed stage: a new cache, seeded again
    assert (added(mb, "cf:3")[1]["got"], added(mb, "cf:3")[1]["runs"].strip()) == ("two\n", "1")


def test_cache_ids_secret_ids_and_a_locked_cache_as_buildkit(mb, tmp_path):
    """BuildKit's default cache id is path.Clean(target) (target=/x/ and /x share a cache);
    a secret id with slashes is the file /run/secrets/ + path.Base(id); a step waiting for a
    `sharing=locked` cache another build holds says so."""
    import fcntl
    import hashlib
    import threading

    secret = tmp_path / "token"
    secret.write_text("s3cret")
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN --mount=type=cache,target=/x/ echo first > /x/f
RUN --mount=type=cache,target=/x,sharing=locked cat /x/f > /shared
RUN --mount=type=secret,id=team/token cat /run/secrets/token > /secret-len && wc -c < /run/secrets/token > /secret-len
""")
    lock_dir = mb.root / "cache/mounts"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock_file = lock_dir / f"{hashlib.sha256(b'/x').hexdigest()[:32]}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    timer = threading.Timer(3.0, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    timer.start()
    try:
        out = mb.build(ctx, "--secret", f"id=team/token,src={secret}", "-t", "ids:1")
    finally:
        timer.join()
        os.close(fd)
    assert "waiting for cache mount /x (locked by another build)" in out.stderr + out.stdout
    files = added(mb, "ids:1")[1]
    assert files["shared"] == "first\n" and files["secret-len"].strip() == "6"
