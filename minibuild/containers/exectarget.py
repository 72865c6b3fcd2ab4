"""`exec`: a running container's namespaces and root held as fds, and a command run inside them.

The fds are opened while the container's init is verified (its start time matches the record),
so a recycled pid is never entered; the command then joins the container's cgroups (its limits
and freezer), setns(2)es into each namespace, chroots to the container's root and is forked
again (the pid namespace applies to children only).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minibuild.containers.records import Container, ContainerError, Containers, \
    process_start_time
from minibuild.errors import SandboxError
from minibuild.containers.signals import is_paused
from minibuild.sandbox import cgroups, linux
from minibuild.sandbox.confinement import Confinement
from minibuild.sandbox.console import open_console
from minibuild.sandbox.freezer import cgroups_of
from minibuild.sandbox.process import Process, enter_workdir, exec_as, exit_status, \
    process_environment

# setns order: the pid ns applies to our children only, mnt (it changes our root) then user
# (--userns=auto: once in it we hold no capability over the other namespaces)
_NAMESPACES = ("ipc", "uts", "net", "pid", "mnt", "user")


@dataclass(frozen=True)
class ExecTarget:
    """fds on a running container's namespaces and root, opened while its init was verified."""

    namespaces: tuple[tuple[str, int], ...]
    root: int
    cgroups: tuple[str, ...] = ()  # the container's cgroup dirs: what exec starts joins them

    def close(self) -> None:
        """Release the fds."""
        for _, fd in self.namespaces:
            os.close(fd)
        os.close(self.root)


def open_target(containers: Containers, container: Container) -> ExecTarget:
    """Open the container init's namespaces and root; ContainerError unless it is running."""
    if containers.status(container) != "running":
        raise ContainerError(f"container {container.name} is not running",
                             hint=f"`minibuild start {container.name}` starts it again")
    pid, fds = container.pid, []
    try:
        for name in _NAMESPACES:
            fds.append((name, os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        for _, fd in fds:
            os.close(fd)
        raise ContainerError(f"container {container.name} is not running ({exc.strerror})") from exc
    target = ExecTarget(tuple(fds), root, tuple(str(path) for _, path in cgroups_of(pid)))
    if process_start_time(pid) != container.pid_start:  # the pid was recycled meanwhile
        target.close()
        raise ContainerError(f"container {container.name} is not running")
    if is_paused(containers, container):
        target.close()
        raise ContainerError(f"container {container.name} is paused",
                             hint=f"`minibuild unpause {container.name}` first")
    return target


def exec_in(target: ExecTarget, proc: Process, confinement: Confinement | None = None) -> int:
    """Run `proc` inside the container (its namespaces, root, user, seccomp); its exit status."""
    pid = _fork_reporting(lambda: _exec_child(target, proc, confinement))
    while True:
        try:
            return exit_status(os.waitpid(pid, 0)[1])
        except KeyboardInterrupt:
            continue  # the terminal's Ctrl-C reached the command too: wait for its status


def _fork_reporting(body: Callable[[], int]) -> int:
    """Fork a child that runs `body`, prints what it raised on fd 2 and exits (126 on error)."""
    pid = os.fork()
    if pid == 0:
        code = 126
        try:
            code = body()
        except BaseException as exc:  # noqa: BLE001 - a forked child reports and leaves
            os.write(2, f"minibuild exec: {exc}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    return pid


def _exec_child(target: ExecTarget, proc: Process, confinement: Confinement | None) -> int:
    """Forked: setns into each namespace, chroot to the container's root, fork the command."""
    parent = os.getppid()
    linux.die_with_parent()
    linux.not_dumpable()  # the command's child inherits it: no container process opens its exe
    cgroups.enter(target.cgroups)  # host paths: before setns(mnt)
    # compared before any setns: once in the container's mnt ns, /proc is its pid ns's, where we
    # are not, and /proc/self does not exist
    joining = [(name, fd) for name, fd in target.namespaces if not _same_namespace(name, fd)]
    for name, fd in joining:  # not: e.g. the host's network: rootless, setns into it is EPERM
        try:
            linux.setns(fd)
        except OSError as exc:
            raise SandboxError(f"cannot enter the container's {name} namespace: "
                               f"{os.strerror(exc.errno)}") from exc
        if name == "user":  # become its root (host uid: the range's start), not host root
            os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            linux.die_with_parent()  # the uid change cleared PDEATHSIG
            if os.getppid() != parent:
                os._exit(1)
    os.fchdir(target.root)
    os.chroot(".")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides; we relay its status
    child = _fork_reporting(lambda: _exec_command(proc, confinement))  # pid ns: children only
    return exit_status(os.waitpid(child, 0)[1])


def _same_namespace(name: str, fd: int) -> bool:
    """Whether we are in that namespace already."""
    ours, theirs = os.stat(f"/proc/self/ns/{name}"), os.fstat(fd)
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def _exec_command(proc: Process, confinement: Confinement | None) -> int:
    """Inside: stdio, no other fd of ours, user, cwd, env, execve; returns only on failure."""
    from minibuild.fs.users import read_user_files, resolve_user

    user = resolve_user(proc.user or "", *read_user_files(Path("/")))
    stdio = proc.stdio
    if proc.console is not None:  # -t: a pty of the container's devpts, as run -t has
        slave = open_console(proc.console, user.uid)
        stdio = (slave, slave, slave)
    if stdio is not None:
        for target, fd in enumerate([os.dup(fd) for fd in stdio]):
            os.dup2(fd, target)
    linux.close_from(3)  # whatever our caller left open would reach the host (runc: CVE-2024-21626)
    if proc.tty:
        linux.controlling_tty()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    env = process_environment(proc.env, user.default_home())
    enter_workdir(proc.cwd)
    return exec_as(user, proc.argv, env, confinement)
