"""Planning (plan.py): stages, global ARGs before FROM, the target and the stages it needs."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import buildargs
from minibuild.dockerfile.parser import Buildfile, parse
from minibuild.dockerfile.plan import make_plan
from minibuild.errors import BuildfileError


def plan_of(text: str, build_args=None, target=None):
    return make_plan(parse(text), build_args or {}, target)


def test_global_args_expand_from_and_build_args_override():
    plan = plan_of("ARG TAG=1.0\nARG NAME=base\nFROM ${NAME}:${TAG}\nRUN true\n", {"TAG": "2.0"})
    assert plan.stages[0].base == "base:2.0"
    assert plan.global_args == (("TAG", "2.0"), ("NAME", "base"))


def test_a_global_arg_sees_the_ones_before_it_and_a_bare_one_stays_unset():
    plan = plan_of("ARG A=x\nARG B=${A}y\nARG C\nFROM img:${B}${C}\n")
    assert plan.global_args == (("A", "x"), ("B", "xy"), ("C", None))
    assert plan.stages[0].base == "img:xy"


def test_automatic_platform_args_are_in_the_global_scope():
    # the reference: "defined in the global scope": FROM lines and global ARG defaults see them
    os_name, arch, variant = buildargs.host_platform()
    plan = plan_of("ARG IMG=img-$TARGETARCH\nFROM --platform=$BUILDPLATFORM ${IMG}:$TARGETOS\n")
    assert plan.stages[0].base == f"img-{arch}:{os_name}"
    values = plan.global_values()
    assert values["TARGETPLATFORM"] == values["BUILDPLATFORM"] == buildargs.format_platform(
        os_name, arch, variant)
    assert values["TARGETVARIANT"] == variant and values["BUILDARCH"] == arch
    assert plan.global_args == (("IMG", f"img-{arch}"),)  # the Buildfile's own ARGs only


def test_build_args_and_global_args_override_the_automatic_ones():
    plan = plan_of("ARG TARGETOS=plan9\nFROM x\n", {"TARGETARCH": "riscv64"})
    assert plan.global_values()["TARGETARCH"] == "riscv64"
    assert plan.global_values()["TARGETOS"] == "plan9"
    bare = plan_of("ARG TARGETOS\nFROM img:$TARGETOS\n")  # a bare re-declaration keeps it
    assert bare.stages[0].base == "img:linux"


def test_targetstage_names_the_target_else_the_last_stage_else_default():
    text = "FROM a AS Build\nFROM b AS final\n"
    assert plan_of(text).global_values()["TARGETSTAGE"] == "final"
    assert plan_of(text, target="Build").global_values()["TARGETSTAGE"] == "Build"
    assert plan_of("FROM a AS one\nFROM b\n").global_values()["TARGETSTAGE"] == "default"


def test_from_takes_only_this_machine_s_platform():
    arch = buildargs.host_platform()[1]
    assert plan_of(f"FROM --platform=linux/{arch} a\n").stages[0].base == "a"
    with pytest.raises(BuildfileError, match=r"^Buildfile:1:1: FROM --platform=windows/amd64: "
                                             r"minibuild builds only for this machine's platform"):
        plan_of("FROM --platform=windows/amd64 a\n")
    with pytest.raises(BuildfileError, match=r"unknown flag --platfrom for FROM \(did you mean "
                                             r"--platform\?\)"):
        plan_of("FROM --platfrom=linux a\n")


def test_stages_split_at_each_from_with_their_steps():
    plan = plan_of("FROM a AS One\nRUN x\nCOPY . /\nFROM b\nENV k=v\n")
    first, second = plan.stages
    assert (first.index, first.name, first.base, first.label) == (0, "one", "a", "one")
    assert [s.keyword for s in first.steps] == ["RUN", "COPY"]
    assert (second.name, second.label, [s.keyword for s in second.steps]) == (None, "stage-1", ["ENV"])
    assert first.origin.keyword == "FROM" and first.origin.location.line == 1
    assert (plan.escape, plan.file) == ("\\", "Buildfile")


def test_stage_lookup_by_name_any_case_or_index():
    plan = plan_of("FROM a AS build\nFROM b\n")
    assert plan.stage("BUILD").index == 0 and plan.stage("1").index == 1
    assert plan.stage("2") is None and plan.stage("nope") is None


def test_unknown_target_is_named_with_the_stages():
    with pytest.raises(BuildfileError) as info:
        plan_of("FROM a AS one\nFROM b AS two\n", target="missing")
    assert "target stage 'missing' could not be found (stages: one, two)" in str(info.value)


def test_a_mistyped_target_gets_the_nearest_stage_name():
    with pytest.raises(BuildfileError) as info:
        plan_of("FROM a AS build\nFROM b AS final\n", target="buidl")
    assert "'buidl' could not be found (did you mean build?) (stages: build, final)" in str(info.value)
    assert plan_of("FROM a AS build\n").did_you_mean("BIULD") == " (did you mean build?)"
    assert plan_of("FROM a AS build\n").did_you_mean("busybox") == ""


def test_target_and_only_needed_stages():
    text = ("FROM base AS build\nRUN make\n"
            "FROM base AS unused\nRUN exit 1\n"
            "FROM base AS final\nCOPY --from=build /out /out\n"
            "FROM final AS test\nRUN test\n")
    plan = plan_of(text)
    assert plan.needed == (0, 2, 3)
    plan = plan_of(text, target="final")
    assert (plan.target, plan.needed) == (2, (0, 2))
    assert plan.total_steps == 4


def test_a_run_mount_from_a_stage_needs_it_expanded_with_the_stage_args():
    text = ("FROM a AS deps\nFROM a AS other\n"
            "FROM a\nARG SRC=deps\nRUN --mount=type=bind,from=${SRC},target=/d true\n")
    assert plan_of(text).needed == (0, 2)
    assert plan_of(text, {"SRC": "other"}).needed == (1, 2)


def test_a_later_stage_is_never_needed_by_an_earlier_one():
    assert plan_of("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n", target="one").needed == (0,)


def test_duplicate_stage_names_are_refused_with_the_line():
    with pytest.raises(BuildfileError) as info:
        plan_of("FROM a AS x\nFROM b AS X\n")
    assert str(info.value).startswith("Buildfile:2:1: duplicate stage name 'x'")


def test_a_buildfile_without_from_is_refused():
    # The parser refuses one already; the planner does not rely on it (parse cache entries).
    only_arg = Buildfile(parse("ARG a\nFROM x\n").instructions[:1], "\\", None, "Buildfile")
    with pytest.raises(BuildfileError, match="no FROM instruction"):
        make_plan(only_arg, {})


def test_an_instruction_before_from_other_than_arg_is_refused_at_its_line():
    run, base = parse("FROM x\n  RUN a\n").instructions[::-1]
    with pytest.raises(BuildfileError) as info:
        make_plan(Buildfile((run, base), "\\", None, "Buildfile"), {})
    assert str(info.value) == "Buildfile:2:3: the first instruction must be FROM (or ARG before FROM)"
