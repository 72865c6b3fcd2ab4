"""Multi-stage builds: COPY --from, --target, unused stages, FROM an earlier stage."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_context
from tests.integration.test_build import umoci_unpack
from tests.integration.test_cache import cached_runs

pytestmark = pytest.mark.integration

MULTI = """ARG BASE=base:1.0
FROM $BASE AS build
WORKDIR /src
COPY main.sh .
RUN mkdir -p /out && sed 's/NAME/world/' main.sh > /out/app.sh && chmod 0755 /out/app.sh \\
    && head -c 100000 /dev/zero > /out/junk

FROM $BASE AS broken
RUN echo "this stage must never run" && exit 1

FROM build AS test
RUN test -x /out/app.sh && echo tested > /tested

FROM $BASE AS final
COPY --from=build /out/app.sh /usr/local/bin/app
COPY --from=0 /src/main.sh /usr/share/app/
CMD ["app"]
"""


@pytest.fixture
def project(tmp_path):
    return write_context(tmp_path / "ctx", MULTI, {"main.sh": "#!/bin/sh\necho hello NAME\n"})


def test_final_stage_copies_only_what_it_needs_and_skips_unused_stages(mb, project, tmp_path):
    out = mb.build(project, "-t", "multi:1")
    assert "this stage must never run" not in out.stderr
    assert "[test " not in out.stderr  # the test stage is not needed by final
    root = umoci_unpack(mb, "multi:1", tmp_path)
    assert (root / "usr/local/bin/app").read_text() == "#!/bin/sh\necho hello world\n"
    assert (root / "usr/local/bin/app").stat().st_mode & 0o777 == 0o755
    assert (root / "usr/share/app/main.sh").exists()
    assert not (root / "out").exists() and not (root / "src").exists()
    history = json.loads(mb.run("history", "--format", "json", "multi:1").stdout)
    assert history[1]["created_by"] == "COPY --from=0 /src/main.sh /usr/share/app/"
    assert history[2]["created_by"] == "COPY --from=build /out/app.sh /usr/local/bin/app"
    assert sum(h["wasted"] for h in history) == 0


def test_target_builds_a_stage_from_an_earlier_stage(mb, project, tmp_path):
    out = mb.build(project, "--target", "test", "-t", "multi:test")
    assert "[final " not in out.stderr and "this stage must never run" not in out.stderr
    root = umoci_unpack(mb, "multi:test", tmp_path)
    assert (root / "tested").read_text() == "tested\n"
    assert (root / "out/app.sh").exists()


def test_copy_from_is_cached_on_the_source_stage(mb, project):
    mb.build(project)
    assert all(cached_runs(mb.build(project).stderr).values())
    (project / "main.sh").write_text("#!/bin/sh\necho bye NAME\n")
    changed = cached_runs(mb.build(project, "-t", "multi:2").stderr)
    assert changed["COPY --from=build /out/app.sh /usr/local/bin/app"] is False
    assert changed["WORKDIR /src"] is True


def test_copy_from_an_image_in_the_store(mb, tmp_path):
    mb.build(write_context(tmp_path / "a", "FROM base:1.0\nRUN echo from-image > /payload\n"), "-t", "src:1")
    mb.build(write_context(tmp_path / "b", "FROM base:1.0\nCOPY --from=src:1 /payload /got\n"), "-t", "dst:1")
    assert (umoci_unpack(mb, "dst:1", tmp_path) / "got").read_text() == "from-image\n"


def test_copy_from_a_later_stage_or_missing_image_is_an_error(mb, tmp_path):
    ctx = write_context(tmp_path / "c", "FROM base:1.0 AS one\nCOPY --from=two /x /x\nFROM base:1.0 AS two\n")
    proc = mb.build(ctx, "--target", "one", check=False)
    assert proc.returncode == 1 and "Buildfile:2:1" in proc.stderr and "earlier stage" in proc.stderr
    ctx = write_context(tmp_path / "d", "FROM base:1.0\nCOPY --from=nosuch:9 /x /x\n")
    proc = mb.build(ctx, check=False)
    assert "Buildfile:2:1: COPY nosuch:9: image not found in the store" in proc.stderr


def test_copy_from_follows_the_images_own_absolute_links_and_ignores_no_file(mb, tmp_path):
    src = write_context(tmp_path / "src", "FROM base:1.0\nRUN mkdir -p /data/real && echo inside > /data/real/f "
                                          "&& ln -s /data/real /data/abs && echo 'data' > /.dockerignore\n")
    mb.build(src, "-t", "linked:1")
    dst = write_context(tmp_path / "dst", "FROM base:1.0\nCOPY --from=linked:1 /data/abs/f /f\n"
                                          "COPY --from=linked:1 /data/real/ /all/\n")
    mb.build(dst, "-t", "linked:2")
    root = umoci_unpack(mb, "linked:2", tmp_path)
    assert (root / "f").read_text() == "inside\n" and (root / "all/f").read_text() == "inside\n"
