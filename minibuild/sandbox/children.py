"""The forked helpers of the sandbox, and what each does before the step's command runs.

The process tree of `Sandbox.run`:

    P (caller) ── C: PDEATHSIG, setns(net), unshare(mnt,pid,uts,ipc), overlay, --mounts,
                   │  hostname (P moves C, then I, into the step's cgroup meanwhile)
                   └─ I: pid 1 of the new pid ns: chroot, /proc, /dev, pivot_root (pivot.py),
                       │ resolve user, reap
                       └─ X: Landlock, seccomp, drop capabilities, become the user, execve

For a container (Process.pid1) I does X's part itself: the user's command is pid 1, as in
docker, and reaps its own zombies.

`Sandbox.call` has only C, which mounts, chroots and runs a Python callable. Every mount lives
in C's private mount namespace, so the kernel tears it down with C. When I exits the kernel
kills everything left in the step's pid namespace. The forked children never touch Python
locks or sys.stdout: they use raw fds and always leave through os._exit.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from minibuild.sandbox import idmapped, linux, pivot
from minibuild.sandbox.console import open_console
from minibuild.sandbox.channel import Pipes, report, send_pid
from minibuild.errors import BuildError, SandboxError
from minibuild.sandbox.overlay import OverlayOptions, mount_overlay
from minibuild.sandbox.process import Process, enter_workdir, exec_as, exit_status, \
    process_environment
from minibuild.sandbox.scaffold import bind_etc_files, mount_proc_dev, open_etc_files, open_host_devices
from minibuild.sandbox.stepmounts import StepMount, mount_all, shm_tmpfs
from minibuild.fs.users import ResolvedUser, read_user_files, resolve_user

if TYPE_CHECKING:
    from minibuild.sandbox.confinement import Confinement

SETUP_FAILED = 125  # a child's exit code when it reported an error on the info pipe

_MAXFD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


@dataclass(frozen=True)
class RunPlan:
    """What the helper tree of one `run` needs, decided in the parent."""

    overlay: OverlayOptions
    merged: str
    process: Process
    parent_pid: int
    new_api: bool
    scaffold: str
    mounts: tuple[StepMount, ...] = ()  # a RUN's --mount, made after the root overlay
    confinement: Confinement | None = None  # Landlock, seccomp, no_new_privs for X
    netns: int | None = None  # fd on the network namespace to join (None: the host's)
    userns: idmapped.Mapping | None = None  # --userns=auto: the step's own user namespace


@dataclass(frozen=True)
class CallPlan:
    """What the helper of one `call` needs."""

    overlay: OverlayOptions
    merged: str
    cwd: str | None
    parent_pid: int
    new_api: bool
    source: tuple[OverlayOptions, str] | None = None  # a second overlay (COPY --from), + where
    pre_chroot: Callable[[], None] | None = None


def child_main(pipes: Pipes, body: Callable[[], int]) -> NoReturn:
    """Run a forked child's body; report any exception; never return into the caller's code."""
    code = SETUP_FAILED
    try:
        try:
            code = body()
        except BaseException as exc:
            info = pipes.get("info_w")  # looked up late: X moves it to fd 3
            if info is not None:
                report(info, exc)
    finally:
        os._exit(code)


# -- C ------------------------------------------------------------------------------------------


def namespace_child(plan: RunPlan, pipes: Pipes) -> int:
    """C: cgroup, namespaces + overlay, then fork I and relay its exit status."""
    _die_with_parent(plan.parent_pid)
    _quiet_signals()
    pipes.close("out_r", "info_r", "stdin_w", "ack_w", "joined_w")
    if plan.netns is not None:
        _join_network(plan.netns)
        if plan.userns is not None:
            idmapped.open_privileged_ports()
    _unshare(linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC)
    _private_mounts()
    _mount_root(plan)
    if plan.mounts:
        _mount_steps(plan)
    if plan.userns is not None:  # acting_as changed our fsuid, which clears PDEATHSIG: again
        _die_with_parent(plan.parent_pid)
    try:
        socket.sethostname(plan.process.hostname)
    except OSError as exc:
        raise SandboxError(f"cannot set the hostname in the sandbox: {exc}") from exc
    os.chdir("/")  # I's pivot_root moves a cwd on the old root along; any other would pin it
    lifeline, keep = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(keep)
        child_main(pipes, lambda: _init(plan, pipes, lifeline))
    os.close(lifeline)
    send_pid(pipes.fds["info_w"], pid)
    pipes.close("out_w", "info_w", "stdin_r", "joined_r")
    os.read(pipes.fds["ack_r"], 1)  # reap I only once P holds a pidfd on it: no pid reuse race
    return exit_status(os.waitpid(pid, 0)[1])


def _mount_root(plan: RunPlan) -> None:
    """The root overlay; with --userns=auto over idmapped layers, mounted as the ns's root."""
    if plan.userns is None:
        mount_overlay(plan.overlay, plan.merged, plan.new_api)
        return
    idmapped.idmap_dirs(idmapped.mapped_dirs(plan.overlay), plan.userns.fd)
    with idmapped.acting_as(plan.userns.start):
        mount_overlay(plan.overlay, plan.merged, plan.new_api)


def _mount_steps(plan: RunPlan) -> None:
    """The --mounts; with --userns=auto idmapped, and their mount points made (inside
    idmapped volumes too) as the namespace's root, whose ids the idmapped mounts map."""
    if plan.userns is None:
        mount_all(plan.mounts, plan.merged, plan.new_api)
        return
    with idmapped.acting_as(plan.userns.start):
        mount_all(plan.mounts, plan.merged, plan.new_api, plan.userns.fd)


def call_child(plan: CallPlan, pipes: Pipes, fn: Callable[[], None]) -> int:
    """C for `call`: own mount ns + overlay, chdir(cwd) then chroot, run fn."""
    _die_with_parent(plan.parent_pid)
    _quiet_signals()
    pipes.close("info_r")
    _unshare(linux.CLONE_NEWNS)
    _private_mounts()
    mount_overlay(plan.overlay, plan.merged, plan.new_api)
    if plan.source is not None:
        mount_overlay(plan.source[0], plan.source[1], plan.new_api)
    if plan.cwd is not None:
        os.chdir(plan.cwd)
    if plan.pre_chroot is not None:
        plan.pre_chroot()
    os.chroot(plan.merged)
    if plan.cwd is None:
        os.chdir("/")
    fn()
    return 0


def _wait_joined(pipes: Pipes) -> None:
    """With a cgroup, P moves C, then I, into it while they set up (a move can wait ~10 ms
    for an RCU grace period): I forks the command only once P says both are in."""
    joined = pipes.get("joined_r")
    if joined is None:
        return
    if not os.read(joined, 1):
        raise SandboxError("the step could not be moved into its cgroup")
    pipes.close("joined_r")


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL us when the parent dies, and leave if it already did before we asked."""
    linux.die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(SETUP_FAILED)


def _quiet_signals() -> None:
    """Helpers ignore Ctrl-C (the parent decides); Python handlers must not run in a fork."""
    handled = []
    for sig in range(1, signal.NSIG):
        try:
            handler = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if callable(handler) and sig != signal.SIGCHLD:
            handled.append(sig)
    linux.set_disposition(handled, linux.SIG_IGN)
    linux.set_disposition((signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT),
                          linux.SIG_IGN)


def _join_network(fd: int) -> None:
    """setns(2) into the build's or container's network namespace (see network.py)."""
    try:
        linux.setns(fd)
    except OSError as exc:
        raise SandboxError(f"cannot join the network namespace: {exc.strerror}") from exc
    os.close(fd)


def _unshare(flags: int) -> None:
    """unshare(2); raises SandboxError."""
    try:
        linux.unshare(flags)
    except OSError as exc:
        raise SandboxError(f"cannot create namespaces: {exc.strerror}") from exc


def _private_mounts() -> None:
    """Stop mount events propagating back to the host's namespace."""
    try:
        linux.mount("none", "/", "", linux.MS_REC | linux.MS_PRIVATE, None)
    except OSError as exc:
        raise SandboxError(f"cannot make / private in the sandbox: {exc.strerror}") from exc


# -- I ------------------------------------------------------------------------------------------


def _init(plan: RunPlan, pipes: Pipes, lifeline: int) -> int:
    """I, pid 1 of the step: /proc, /dev, chroot, user; fork X and reap until X exits."""
    _die_with_init_parent(lifeline)
    linux.not_dumpable()  # X inherits it until its execve: neither is open to the step
    pipes.close("ack_r")
    etc_files = open_etc_files(plan.scaffold)
    devices = open_host_devices()
    host_root = pivot.hold_host_root()
    os.chroot(plan.merged)
    os.chdir("/")
    mount_proc_dev(devices, plan.process.pipes, harden=not plan.process.privileged,
                   shm=shm_tmpfs(plan.mounts))
    bind_etc_files(etc_files)
    pivot.pivot_into(plan.merged, host_root)  # no host mount stays in the namespace
    user = resolve_user(plan.process.user or "", *read_user_files(Path("/")))
    env = process_environment((*plan.process.env, *plan.process.secret_env), user.default_home())
    _wait_joined(pipes)
    if plan.userns is not None:  # root of it from here on (and so X, and `exec` joins it)
        idmapped.enter(plan.userns)
        _die_with_init_parent(lifeline)  # a uid change clears PDEATHSIG: ask again
    os.close(lifeline)
    if plan.process.pid1:  # a container's command: no init of ours stays between
        return _exec_command(plan, user, env, pipes)
    pid = os.fork()
    if pid == 0:
        child_main(pipes, lambda: _exec_command(plan, user, env, pipes))
    pipes.close("out_w", "stdin_r", "info_w")
    return _reap_until(pid)


def _die_with_init_parent(lifeline: int) -> None:
    """PDEATHSIG for pid 1 of a new pid ns (getppid() is 0 there): EOF on a pipe only C holds
    (the caller closes it once no uid change is left to clear the signal)."""
    linux.die_with_parent()
    if select.select([lifeline], [], [], 0)[0]:
        os._exit(SETUP_FAILED)


def _reap_until(pid: int) -> int:
    """As pid 1: reap every zombie until `pid` exits; its exit status."""
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return exit_status(status)


# -- X ------------------------------------------------------------------------------------------


def _exec_command(plan: RunPlan, user: ResolvedUser, env: dict[str, str], pipes: Pipes) -> int:
    """X: wire fds, drop to the user, chdir, execve; returns only when execve failed."""
    process = plan.process
    stdio = process.stdio
    if process.console is not None:
        slave = open_console(process.console, user.uid)
        stdio = (slave, slave, slave)
    _wire_stdio(pipes, stdio)
    _default_signals()
    if process.tty:
        linux.controlling_tty()
    if process.make_cwd:  # a container's: possibly inside a volume or tmpfs just mounted
        try:
            os.makedirs(process.cwd, 0o755, exist_ok=True)
        except OSError as exc:
            raise BuildError(f"cannot use working directory {process.cwd!r}: "
                             f"{exc.strerror}") from exc
    enter_workdir(process.cwd)
    return exec_as(user, process.argv, env, plan.confinement,
                   privileged=process.privileged, keep_deathsig=process.pid1)


def _wire_stdio(pipes: Pipes, stdio: tuple[int, int, int] | None = None) -> None:
    """stdin (pipe or /dev/null) on 0, output on 1 and 2, info on 3 (cloexec); close the rest.

    With `stdio`, those fds go on 0, 1 and 2 instead (the output pipe then just closes).
    """
    if stdio is None:
        stdin = pipes.get("stdin_r")
        if stdin is None:
            stdin = os.open("/dev/null", os.O_RDONLY)
        stdio = (stdin, pipes.fds["out_w"], pipes.fds["out_w"])
    # through high copies first: a given fd may sit where another one goes (e.g. 1 given as 0)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (*stdio, pipes.fds["info_w"])]
    for target, fd in enumerate(high[:3]):
        os.dup2(fd, target)
    os.dup2(high[3], 3, inheritable=False)
    pipes.fds = {"info_w": 3}
    os.closerange(4, _MAXFD)


def _default_signals() -> None:
    """The command starts with default dispositions and nothing blocked (Python ignores SIGPIPE)."""
    linux.set_disposition(range(1, signal.NSIG), linux.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
