"""Review of RUN --mount on real builds: a from= that names a registry image the store lacks,
and a from= written with a variable."""

from __future__ import annotations

import json

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
