"""--security-opt as docker parses it, and the record form of the choice."""

from __future__ import annotations

import pytest

from minibuild.errors import SandboxError
from minibuild.sandbox.confinement import SecurityOptions, parse_security_opts


def test_defaults_are_dockers():
    assert parse_security_opts(()) == SecurityOptions("default", False)


def test_unconfined_and_a_profile_file(tmp_path):
    assert parse_security_opts(["seccomp=unconfined"]).seccomp == "unconfined"
    assert parse_security_opts(["seccomp:unconfined"]).seccomp == "unconfined"
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    assert parse_security_opts([f"seccomp={profile}"]).seccomp == profile.read_text()


def test_no_new_privileges_forms():
    for text in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:1"):
        assert parse_security_opts([text]).no_new_privileges
    assert not parse_security_opts(["no-new-privileges", "no-new-privileges=false"]) \
        .no_new_privileges


@pytest.mark.parametrize("text", ["apparmor=unconfined", "seccomp=", "no-new-privileges=maybe",
                                  "label=disable"])
def test_others_are_refused(text):
    with pytest.raises(SandboxError, match="invalid --security-opt"):
        parse_security_opts([text])


def test_missing_or_broken_profile_file(tmp_path):
    with pytest.raises(SandboxError, match="No such file"):
        parse_security_opts([f"seccomp={tmp_path / 'none.json'}"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SandboxError, match="not valid JSON"):
        parse_security_opts([f"seccomp={tmp_path / 'bad.json'}"])


def test_record_form_round_trips():
    options = SecurityOptions('{"defaultAction": "SCMP_ACT_ALLOW"}', True)
    assert SecurityOptions.from_json(options.to_json()) == options
    assert SecurityOptions.from_json(None) == SecurityOptions()
