"""Signals to a container's processes, on our own processes (no root, no container)."""

from __future__ import annotations

import os
import signal
from dataclasses import replace

import pytest

from minibuild.containers.records import Container, ContainerError, Containers
from minibuild.containers import signals
from minibuild.containers.signals import Paused, namespace_pids, pause, stop, \
    stop_signal, unpause
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor

GONE = 2 ** 22 + 12345  # above pid_max: never a process


def record(tmp_path) -> tuple[Containers, Container]:
    records = Containers(tmp_path)
    return records, records.create(Container(
        id="", name="c", image="x", manifest=Descriptor(
            "application/vnd.oci.image.manifest.v1+json", Digest.of(b"m"), 1),
        diff_ids=(), argv=("sh",), env=(), cwd="/", user="", network="host",
        created="2024-01-01T00:00:00Z"))


def test_stop_signal_takes_names_with_or_without_sig_and_numbers():
    assert stop_signal("") == signal.SIGTERM
    assert stop_signal("sigint") == stop_signal("INT") == signal.SIGINT
    assert stop_signal("15") == 15
    with pytest.raises(ContainerError, match="unknown stop signal 'SIGFOO'"):
        stop_signal("SIGFOO")


def test_namespace_pids_of_our_pid_namespace_include_us():
    assert os.getpid() in namespace_pids(os.getpid())
    assert namespace_pids(GONE) == []


def test_nothing_is_paused_unless_the_container_runs(tmp_path):
    records, created = record(tmp_path)
    assert Paused(records, created).pids == []
    running = replace(created, state="running", pid=os.getpid())
    assert Paused(records, running, enabled=False).pids == []
    assert Paused(records, running).pids == []  # nobody supervises it: it is dead
    with Paused(records, created):
        pass  # entering and leaving with nothing to stop is harmless


def test_stopping_a_container_that_does_not_run_is_a_no_op(tmp_path):
    records, created = record(tmp_path)
    assert stop(records, created, timeout=0) is False
    assert stop(records, replace(created, state="exited"), timeout=0) is False


class FakeFreezer:
    """A freezer cgroup that records what it was asked."""

    def __init__(self, frozen: bool = False) -> None:
        self.state, self.calls = frozen, []

    def frozen(self) -> bool:
        return self.state

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.state = True

    def thaw(self) -> None:
        self.calls.append("thaw")
        self.state = False


def running_with(monkeypatch, tmp_path, freezer):
    records, created = record(tmp_path)
    monkeypatch.setattr(records, "status", lambda c: "running")
    monkeypatch.setattr(signals, "freezer_of", lambda pid: freezer)
    return records, replace(created, state="running", pid=os.getpid())


def test_commit_freezes_the_cgroup_instead_of_stopping_pids(monkeypatch, tmp_path):
    fake = FakeFreezer()
    records, running = running_with(monkeypatch, tmp_path, fake)
    with Paused(records, running) as paused:
        assert fake.calls == ["freeze"] and paused.pids == []  # no SIGSTOP list to escape
    assert fake.calls == ["freeze", "thaw"]


def test_commit_leaves_a_paused_container_paused(monkeypatch, tmp_path):
    fake = FakeFreezer(frozen=True)
    records, running = running_with(monkeypatch, tmp_path, fake)
    with Paused(records, running):
        pass
    assert fake.calls == [] and fake.frozen()


def test_pause_and_unpause_refuse_the_wrong_state(monkeypatch, tmp_path):
    fake = FakeFreezer()
    records, running = running_with(monkeypatch, tmp_path, fake)
    with pytest.raises(ContainerError, match="is not paused"):
        unpause(records, running)
    pause(records, running)
    with pytest.raises(ContainerError, match="is already paused"):
        pause(records, running)
    unpause(records, running)
    assert fake.calls == ["freeze", "thaw"]


def test_pause_without_a_freezer_cgroup_says_why(monkeypatch, tmp_path):
    records, running = running_with(monkeypatch, tmp_path, None)
    with pytest.raises(ContainerError, match="has no freezer cgroup"):
        pause(records, running)
