"""Signals to a running container: `stop` (its STOPSIGNAL, then SIGKILL), `pause` and
`unpause` (its freezer cgroup), and `Paused` (frozen while `commit` reads its upper dir).

Each signal goes to a pid checked against the record's start time, or through a pidfd, so a
recycled pid never receives one meant for the container.
"""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

from minibuild.containers.records import Container, ContainerError, Containers, \
    process_start_time
from minibuild.fs import idmap
from minibuild.sandbox import linux
from minibuild.sandbox.freezer import Freezer, freezer_of


def stop(containers: Containers, container: Container, timeout: float = 10.0) -> bool:
    """STOPSIGNAL (SIGTERM) to the command (pid 1 of its namespace: without a handler it
    ignores it, as in docker), SIGKILL after `timeout`; False if not running."""
    if containers.status(container) != "running":
        return False
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        return False
    try:
        if process_start_time(container.pid) != container.pid_start:
            return False
        linux.pidfd_send(pidfd, stop_signal(container.stop_signal))
        freezer = _freezer(container)
        if freezer is not None and freezer.frozen():
            freezer.thaw()  # after the signal, as docker does: a paused container stops too
        if not select.select([pidfd], [], [], timeout)[0]:
            linux.pidfd_kill(pidfd)  # the kernel kills the whole ns
    finally:
        os.close(pidfd)
    if not containers.wait_unsupervised(container.id, 10.0):
        raise ContainerError(f"container {container.name}: its supervisor did not finish")
    return True


def send(container: Container, number: int) -> None:
    """`kill -s`: the signal to the command, pid 1 of the container (through a pidfd on it);
    SIGKILL ends the whole pid namespace with it."""
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        return
    try:
        if process_start_time(container.pid) != container.pid_start:
            return  # the container ended and its pid was reused
        linux.pidfd_send(pidfd, number)
    finally:
        os.close(pidfd)


def stop_signal(text: str) -> int:
    """A STOPSIGNAL value (`SIGUSR1`, `USR1`, `10`) as a number; SIGTERM when empty."""
    if not text:
        return signal.SIGTERM
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    try:
        return signal.Signals[name].value
    except KeyError:
        raise ContainerError(f"unknown stop signal {text!r}") from None


def namespace_pids(init_pid: int) -> list[int]:
    """Every host pid in the pid namespace whose init is `init_pid`."""
    try:
        target = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == target:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _freezer(container: Container) -> Freezer | None:
    """The freezer of a running container's cgroup (None: an older minibuild started it, or
    the host has neither cgroup v2 nor the v1 freezer)."""
    return freezer_of(container.pid) if container.pid else None


def is_paused(containers: Containers, container: Container) -> bool:
    """Whether the container runs, frozen."""
    if containers.status(container) != "running":
        return False
    freezer = _freezer(container)
    return freezer is not None and freezer.frozen()


def pause(containers: Containers, container: Container) -> None:
    """Freeze every process of a running container (docker's `pause`)."""
    freezer = _running_freezer(containers, container)
    if freezer.frozen():
        raise ContainerError(f"container {container.name} is already paused")
    freezer.freeze()


def unpause(containers: Containers, container: Container) -> None:
    """Thaw a paused container."""
    freezer = _running_freezer(containers, container)
    if not freezer.frozen():
        raise ContainerError(f"container {container.name} is not paused")
    freezer.thaw()


def _running_freezer(containers: Containers, container: Container) -> Freezer:
    if containers.status(container) != "running":
        raise ContainerError(f"container {container.name} is not running")
    freezer = _freezer(container)
    if freezer is None:
        raise ContainerError(f"container {container.name} has no freezer cgroup", hint=(
            "rootless minibuild makes none without a delegated cgroup v2 subtree"
            if idmap.rootless() else "it was started by an older minibuild, or this host mounts "
            "neither cgroup v2 nor the v1 freezer; restart it"))
    return freezer


class Paused:
    """Freeze a running container's cgroup while `commit` reads its upper dir: a process it
    forks meanwhile is born frozen, unlike with SIGSTOP to a list of pids (CVE-2018-15664).
    A container paused already stays paused. Without a freezer cgroup (a container an older
    minibuild started) every process of its pid namespace gets SIGSTOP, as before."""

    def __init__(self, containers: Containers, container: Container, enabled: bool = True) -> None:
        running = enabled and containers.status(container) == "running"
        self.freezer = _freezer(container) if running else None
        self.thaw = False
        self.pids = namespace_pids(container.pid) if running and container.pid and \
            self.freezer is None else []

    def __enter__(self) -> Paused:
        if self.freezer is not None and not self.freezer.frozen():
            self.freezer.freeze()
            self.thaw = True
        for pid in self.pids:
            linux.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thaw:
            self.freezer.thaw()
        for pid in self.pids:
            linux.kill(pid, signal.SIGCONT)
