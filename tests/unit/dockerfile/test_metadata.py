"""What metadata instructions (ENV, ARG, LABEL, CMD, USER, ...) do to a config (metadata.py)."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import metadata
from minibuild.dockerfile.parser import parse
from minibuild.dockerfile.plan import make_plan
from minibuild.errors import BuildfileError
from minibuild.oci.image import ContainerConfig


def apply_all(text: str, build_args=None, config=ContainerConfig()):
    """Apply every instruction after FROM; return the config, scope and history texts."""
    plan = make_plan(parse(text), build_args or {})
    scope, texts = metadata.Scope(), []
    for instruction in plan.stages[-1].steps:
        config, scope, created_by = metadata.apply(instruction, config, scope, build_args or {},
                                                   plan.global_values())
        texts.append(created_by)
    return config, scope, texts


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
    # each ARG has its history entry, as BuildKit's dispatchArg writes it
    assert texts[:3] == ["ARG G=global", "ARG A=default", "ARG B=cli"]
    assert scope.declared == ("G", "A", "B")
    assert scope.history_args(config) == "|3 G=global A=fromenv B=cli "  # ENV wins, as in RUN


def test_arg_history_names_an_arg_without_value_bare():
    config, scope, texts = apply_all("FROM s\nARG X Y=1\nARG X\n")
    assert texts == ["ARG X Y=1", "ARG X"]
    assert scope.declared == ("X", "Y", "X") and dict(scope.args) == {"Y": "1"}
    assert scope.history_args(config) == "|2 X= Y=1 "  # once each, first place kept
    assert metadata.Scope().history_args(config) == ""


def test_automatic_platform_args_need_an_arg_line_in_the_stage():
    # the reference's example: `ARG TARGETPLATFORM` exposes the global automatic arg
    _, scope, texts = apply_all("FROM alpine\nARG TARGETPLATFORM\nARG TARGETSTAGE\n")
    platform = dict(scope.args)["TARGETPLATFORM"]
    assert platform.startswith("linux/") and texts[0] == f"ARG TARGETPLATFORM={platform}"
    assert dict(scope.args)["TARGETSTAGE"] == "default"
    config, scope, _ = apply_all("FROM alpine\nENV A=$TARGETARCH\n")
    assert scope.args == () and config.env == ("A=",)  # not in the stage without an ARG line


def test_proxy_args_reach_run_unkeyed_unless_declared():
    args = {"HTTP_PROXY": "http://p:3128", "no_proxy": "localhost", "OTHER": "x"}
    scope = metadata.Scope.for_stage(("/bin/sh", "-c"), "\\", args)
    config = ContainerConfig()
    assert scope.unkeyed_env(config) == (("HTTP_PROXY", "http://p:3128"), ("no_proxy", "localhost"))
    assert scope.process_env(config) == () and scope.history_args(config) == ""
    declared = metadata.apply(parse("FROM s\nARG HTTP_PROXY\n").instructions[1], config, scope,
                              args, {})[1]
    assert declared.unkeyed_env(config) == (("no_proxy", "localhost"),)
    assert declared.process_env(config) == (("HTTP_PROXY", "http://p:3128"),)
    assert declared.history_args(config) == "|1 HTTP_PROXY=http://p:3128 "
    shadowed = ContainerConfig(env=("no_proxy=*",))
    assert scope.unkeyed_env(shadowed) == (("HTTP_PROXY", "http://p:3128"),)


def test_sandbox_hostname_comes_from_its_build_arg():
    assert metadata.Scope.for_stage(("sh",), "\\", {}).hostname is None
    scope = metadata.Scope.for_stage(("sh",), "\\", {"BUILDKIT_SANDBOX_HOSTNAME": "box"})
    assert scope.hostname == "box"


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


def test_a_redeclared_global_arg_takes_its_global_value():
    _, scope, texts = apply_all("ARG V=1\nFROM s\nARG V\nARG W\n")
    assert dict(scope.args) == {"V": "1"}  # W: declared, no value anywhere
    assert texts == ["ARG V=1", "ARG W"]


def test_maintainer_and_onbuild_are_recorded():
    config, _, texts = apply_all("FROM s\nMAINTAINER me\nONBUILD RUN make\n")
    assert config.onbuild == ("RUN make",)
    assert texts == ["MAINTAINER me", "ONBUILD RUN make"]


def test_an_instruction_that_is_not_metadata_is_refused_at_its_line():
    run = parse("FROM s\nRUN make\n").instructions[1]
    with pytest.raises(BuildfileError, match="^Buildfile:2:1: RUN is not a metadata instruction"):
        metadata.apply(run, ContainerConfig(), metadata.Scope(), {}, {})


def test_command_argv_and_history_text():
    shell = metadata.Scope(shell=("/bin/bash", "-c"))
    run = parse("FROM s\nRUN make all\n").instructions[1]
    assert metadata.command_argv(run.command, shell) == ("/bin/bash", "-c", "make all")
    assert metadata.describe_command("RUN", run.command) == "RUN make all"
    cmd = parse('FROM s\nCMD ["a", "b"]\n').instructions[1]
    assert metadata.command_argv(cmd.command, shell) == ("a", "b")
    assert metadata.describe_command("CMD", cmd.command) == 'CMD ["a", "b"]'


def test_healthcheck_refuses_an_unknown_flag():
    with pytest.raises(BuildfileError, match="unknown flag --every for HEALTHCHECK"):
        apply_all("FROM s\nHEALTHCHECK --every=1s CMD true\n")
    with pytest.raises(BuildfileError, match=r"--intervall for HEALTHCHECK \(did you mean --interval\?\)"):
        apply_all("FROM s\nHEALTHCHECK --intervall=1s CMD true\n")


def test_inline_files_expand_unless_the_delimiter_is_quoted():
    # the reference's Here-Documents example: <<-EOT expands ${FOO}, <<-"EOT" does not
    text = ("FROM s\nCOPY <<-EOT <<-\"RAW\" /dir/\n\techo \"hello ${FOO}\"\nEOT\n"
            "\techo \"hello ${FOO}\"\nRAW\n")
    copy = parse(text).instructions[1]
    assert metadata.inline_files(copy, {"FOO": "bar"}) == (
        ("EOT", b'echo "hello bar"\n'), ("RAW", b'echo "hello ${FOO}"\n'))


def test_a_stage_base_gets_docker_s_path_and_scratch_its_workdir():
    # BuildKit's emptyImage for scratch; and "make sure that PATH is always set" for any base
    scratch = metadata.base_config(ContainerConfig(), scratch=True)
    assert scratch.env == (f"PATH={metadata.DEFAULT_PATH}",) and scratch.working_dir == "/"
    image = ContainerConfig(env=("A=1",), working_dir="/app")
    assert metadata.base_config(image, scratch=False).env == ("A=1", f"PATH={metadata.DEFAULT_PATH}")
    assert metadata.base_config(image, scratch=False).working_dir == "/app"
    own = ContainerConfig(env=("PATH=/opt/bin",))
    assert metadata.base_config(own, scratch=False) == own
