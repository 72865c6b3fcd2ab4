"""Review of RUN --mount: a from= written with a variable, ids past 32 bits, a cache dir whose
making fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minibuild.build.context import BuildContext
from minibuild.errors import BuildfileError
from minibuild.dockerfile.instructions import Location
from minibuild.build.cachemounts import cache_mount_dir
from minibuild.build.mountsetup import MountHost, Prepared
from minibuild.dockerfile.parser import parse
from minibuild.dockerfile.plan import make_plan
from minibuild.dockerfile.runmount import parse_mount

STAGES = ("ARG PICK=build\n"
          "FROM base:1.0 AS build\nRUN echo build > /out\n"
          "FROM base:1.0 AS other\nRUN echo other > /out\n"
          "FROM base:1.0 AS unused\nRUN exit 3\n")


def needed(text: str, build_args=None) -> list[str]:
    plan = make_plan(parse(STAGES + text), build_args or {})
    return [plan.stages[i].label for i in plan.needed]


@pytest.mark.parametrize("text, build_args, stages", [
    # the step expands from= with the ARGs in scope: the plan must run the stage it names
    ("FROM base:1.0\nARG SRC=build\nRUN --mount=from=$SRC,target=/in true\n", {}, ["build"]),
    ("FROM base:1.0\nARG SRC=build\nRUN --mount=from=${SRC},target=/in true\n", {"SRC": "other"},
     ["other"]),
    ("FROM base:1.0\nARG PICK\nRUN --mount=type=bind,from=$PICK,target=/in true\n", {}, ["build"]),
    ("FROM base:1.0\nENV SRC=other\nRUN --mount=from=$SRC,target=/in true\n", {}, ["other"]),
    ("FROM base:1.0\nARG N=1\nRUN --mount=from=$N,target=/in true\n", {}, ["other"]),
    # not declared in the stage: expands to nothing, as the step will
    ("FROM base:1.0\nRUN --mount=from=$PICK,target=/in true\n", {}, []),
    # a mistake in the word is the step's to report, not the plan's
    ("FROM base:1.0\nRUN --mount=from=${SRC:?unset},target=/in true\n", {}, []),
])
def test_a_mount_from_written_with_a_variable_runs_the_stage_it_names(text, build_args, stages):
    assert needed(text, build_args) == [*stages, "stage-3"]


def mount(text: str):
    return parse_mount(text, Location("Buildfile", 4))


@pytest.mark.parametrize("text", [
    "type=cache,target=/c,uid=99999999999",
    "type=cache,target=/c,gid=4294967295",  # (gid_t)-1: chown would leave the owner as it is
    "type=secret,id=s,uid=4294967296",
])
def test_an_id_past_32_bits_is_a_located_mistake(text):
    with pytest.raises(BuildfileError) as caught:
        mount(text)
    assert caught.value.line == 4 and "want at most 4294967294" in caught.value.message
    assert mount(text.replace("99999999999", "4294967294").replace("4294967295", "4294967294")
                 .replace("4294967296", "65534"))


def test_a_cache_dir_whose_making_fails_leaves_nothing_among_the_caches(tmp_path, monkeypatch):
    def scratch(prefix: str) -> Path:
        raise AssertionError("a shared cache needs no scratch")

    (tmp_path / "ctx").mkdir()
    host = MountHost(cache_mount_dir(tmp_path / "store"), {}, BuildContext(tmp_path / "ctx"), scratch)

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", refuse)
    with pytest.raises(PermissionError):
        with host.setup([Prepared(mount("type=cache,target=/c,id=x,uid=1000"))]):
            pass
    assert sorted(p.name for p in host.cache_root.iterdir() if not p.name.endswith(".lock")) == []
    monkeypatch.undo()
    with host.setup([Prepared(mount(f"type=cache,target=/c,id=x,uid={os.getuid()}"))]) as (mounts, _):
        assert Path(mounts[0].source).is_dir()


def test_a_secret_named_by_source_as_buildkit_takes_it():
    assert mount("type=secret,source=npmrc,target=/root/.npmrc") == mount(
        "type=secret,id=npmrc,target=/root/.npmrc")
    assert mount("type=secret,src=tok").target == "/run/secrets/tok"
    with pytest.raises(BuildfileError, match="id= or its source=, not both"):
        mount("type=secret,id=a,source=b")
