"""docker's limit flags on the CLI: rootless, one warning line for what no cgroup can apply."""

from __future__ import annotations

from minibuild.cli.limits import limits_of
from minibuild.fs import idmap
from minibuild.sandbox import cgroups


def test_rootless_flags_no_cgroup_can_apply_give_one_warning(monkeypatch, capsys):
    monkeypatch.setenv(idmap.USERNS_ENV, "1000:1000")
    monkeypatch.setattr(cgroups, "unavailable", lambda limits: frozenset({"memory", "pids"}))
    limits = limits_of("64m", 10, None)
    assert limits.memory == 64 << 20 and limits.pids == 10
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: --memory, --pids-limit ignored: rootless minibuild has no delegated "
                   "cgroup to apply them in (run as root, or delegate a cgroup v2 subtree with "
                   "the controller)"]


def test_no_warning_when_nothing_was_asked_or_not_rootless(monkeypatch, capsys):
    monkeypatch.setattr(cgroups, "unavailable", lambda limits: limits.controllers)
    limits_of("64m", None, None)  # as root: the sandbox refuses a missing controller itself
    monkeypatch.setenv(idmap.USERNS_ENV, "1000:1000")
    limits_of(None, None, None)
    assert capsys.readouterr().err == ""
