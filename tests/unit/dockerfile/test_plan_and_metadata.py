"""Planning (stages, global ARGs, target) and what metadata instructions do to a config."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import metadata
from minibuild.errors import BuildfileError
from minibuild.oci.image import ContainerConfig
from minibuild.dockerfile.parser import parse
from minibuild.dockerfile.plan import make_plan


def plan_of(text: str, build_args=None, target=None):
    return make_plan(parse(text), build_args or {}, target)


def apply_all(text: str, build_args=None, config=ContainerConfig()):
    """Apply every instruction after FROM; return the config, scope and history texts."""
    plan = plan_of(text, build_args)
    scope, texts = metadata.Scope(), []
    for instruction in plan.stages[-1].steps:
        config, scope, created_by = metadata.apply(instruction, config, scope, build_args or {},
                                                   dict(plan.global_args))
        texts.append(created_by)
    return config, scope, texts


def test_global_args_expand_from_and_build_args_override():
    plan = plan_of("ARG TAG=1.0\nARG NAME=base\nFROM ${NAME}:${TAG}\nRUN true\n", {"TAG": "2.0"})
    assert plan.stages[0].base == "base:2.0"
    assert plan.global_args == (("TAG", "2.0"), ("NAME", "base"))


def test_unknown_target_is_named_with_the_stages():
    with pytest.raises(BuildfileError) as info:
        plan_of("FROM a AS one\nFROM b AS two\n", target="nope")
    assert "target stage 'nope' could not be found (stages: one, two)" in str(info.value)


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


def test_duplicate_stage_names_are_refused_with_the_line():
    with pytest.raises(BuildfileError) as info:
        plan_of("FROM a AS x\nFROM b AS X\n")
    assert str(info.value).startswith("Buildfile:2:1: duplicate stage name 'x'")


def test_env_sees_old_values_and_legacy_form():
    config, _, texts = apply_all("FROM s\nENV a=x\nENV a=y b=$a\nENV c two words\n")
    assert config.env == ("a=y", "b=x", "c=two words")
    assert texts[1] == "ENV a=y b=x"


def test_arg_scope_build_args_and_env_precedence():
    text = "ARG G=global\nFROM s\nARG G\nARG A=default\nARG B\nENV A=fromenv\n"
    config, scope, texts = apply_all(text, {"B": "cli"})
    assert dict(scope.args) == {"G": "global", "A": "default", "B": "cli"}
    assert scope.expansion_env(config)["A"] == "fromenv"
    assert dict(scope.process_env(config))["A"] == "fromenv"
    assert texts[:3] == [None, None, None]  # ARG adds no history


def test_cmd_entrypoint_shell_and_inherited_cmd_reset():
    base = ContainerConfig(cmd=("sh",))
    config, _, _ = apply_all('FROM s\nENTRYPOINT ["/app"]\n', config=base)
    assert config.cmd is None and config.entrypoint == ("/app",)
    config, _, _ = apply_all('FROM s\nCMD ["x"]\nENTRYPOINT ["/app"]\n', config=base)
    assert config.cmd == ("x",)
    config, _, texts = apply_all('FROM s\nSHELL ["/bin/bash", "-c"]\nCMD echo hi\n')
    assert config.cmd == ("/bin/bash", "-c", "echo hi") and config.shell == ("/bin/bash", "-c")
    assert texts == ['SHELL ["/bin/bash", "-c"]', "CMD echo hi"]


def test_labels_ports_volumes_user_stopsignal():
    text = ('FROM s\nENV P=80\nLABEL "a b"=c d=$P\nEXPOSE $P 53/udp 8000-8010\n'
            'VOLUME /data ["/x"]\nUSER nobody:nogroup\nSTOPSIGNAL SIGTERM\n')
    config, _, _ = apply_all(text.replace('VOLUME /data ["/x"]', "VOLUME /data /x"))
    assert dict(config.labels) == {"a b": "c", "d": "80"}
    assert config.exposed_ports == ("53/udp", "80/tcp", "8000-8010/tcp")
    assert config.volumes == ("/data", "/x")
    assert (config.user, config.stop_signal) == ("nobody:nogroup", "SIGTERM")


def test_volume_json_form_keeps_spaces():
    config, _, _ = apply_all('FROM s\nENV D=data\nVOLUME ["/my $D", "/x"]\n')
    assert config.volumes == ("/my data", "/x")


def test_bad_port_is_an_error_with_location():
    with pytest.raises(BuildfileError) as info:
        apply_all("FROM s\nEXPOSE http\n")
    assert str(info.value).startswith("Buildfile:2:1: invalid port 'http'")


def test_healthcheck_durations_and_none():
    config, _, _ = apply_all("FROM s\nHEALTHCHECK --interval=1m30s --retries=3 CMD curl -f localhost\n")
    check = dict(config.healthcheck)
    assert check == {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 90 * 10**9, "Retries": 3}
    config, _, _ = apply_all("FROM s\nHEALTHCHECK NONE\n")
    assert dict(config.healthcheck) == {"Test": ["NONE"]}
    with pytest.raises(BuildfileError):
        apply_all("FROM s\nHEALTHCHECK --interval=soon CMD true\n")


@pytest.mark.parametrize("current,path,expected", [
    ("", "/app", "/app"), ("/app", "src", "/app/src"), ("/app", "../x", "/x"), ("/", "/", "/"),
])
def test_workdir_chains(current, path, expected):
    assert metadata.resolve_workdir(current, path) == expected


def test_parse_duration():
    assert metadata.parse_duration("1h2m3s") == (3600 + 120 + 3) * 10**9
    assert metadata.parse_duration("500ms") == 5 * 10**8
    for bad in ("", "5", "1x", "s1"):
        with pytest.raises(ValueError):
            metadata.parse_duration(bad)


def test_a_copy_whose_sources_change_while_copying_is_refused(tmp_path):
    from minibuild.build.context import BuildContext
    from minibuild.errors import BuildError
    from minibuild.dockerfile.parser import parse
    from minibuild.build.steps import StepFactory

    (tmp_path / "f").write_text("old\n")
    copy = parse("FROM scratch\nCOPY f /f\n").instructions[1]
    factory = StepFactory(sandbox=None, context=BuildContext(tmp_path), output=lambda b: None,
                          scratch=lambda p: tmp_path, network="host")
    step = factory.copy(copy, ContainerConfig(), metadata.Scope(), None)
    step.verify()  # nothing changed: fine
    (tmp_path / "f").write_text("new\n")
    with pytest.raises(BuildError, match="changed while it was being copied"):
        step.verify()
