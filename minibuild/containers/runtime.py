"""Running containers on top of the sandbox: what a container runs, in the foreground or
detached (a supervisor process).

A container is the image's shared layer dirs as overlay lowers plus the container's own upper
dir. Whoever calls `supervise` (the `run` command itself, or a detached supervisor process in a
session of its own) holds the container's lock, runs the sandbox, and records the state; the
sandbox's PDEATHSIG chain ends the container when its supervisor dies, so no mount or process
outlives it. `exec` lives in exectarget.py, stop and pause in signals.py, the pty in terminal.py.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from minibuild.layer import layerpath
from minibuild.containers.containermounts import Attached, attach, covered, seed
from minibuild.containers.records import Container, ContainerError, Containers, now, \
    process_start_time, scrub_scaffolds
from minibuild.containers.logfile import Capture, LogWriter
from minibuild.containers.terminal import Terminal
from minibuild.containers.volumes import Volumes
from minibuild.oci.image import ContainerConfig
from minibuild.sandbox.limits import Limits
from minibuild.sandbox import idranges
from minibuild.sandbox.network import Networks
from minibuild.sandbox.process import Process
from minibuild.sandbox.sandbox import RootFS, Sandbox


# -- what a container runs (docker's rules) ------------------------------------------------------


def command_line(config: ContainerConfig, entrypoint: str | None,
                 cmd: tuple[str, ...]) -> tuple[str, ...]:
    """ENTRYPOINT + CMD as docker combines them; --entrypoint also drops the image's CMD."""
    if entrypoint is not None:
        head: tuple[str, ...] = (entrypoint,) if entrypoint else ()
        tail = cmd
    else:
        head = tuple(config.entrypoint or ())
        tail = cmd or tuple(config.cmd or ())
    argv = head + tail
    if not argv:
        raise ContainerError("no command specified: the image has no ENTRYPOINT or CMD",
                             hint="give one after the image name: minibuild run IMAGE sh")
    return argv


def container_env(config: ContainerConfig, assignments: Iterable[str],
                  host: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The image's ENV, then each -e K=V (a bare -e K takes K from our environment, if set)."""
    env = dict(config.env_dict())
    for text in assignments:
        key, sep, value = text.partition("=")
        if not key:
            raise ContainerError(f"invalid environment variable {text!r} (want KEY=VALUE)")
        if sep:
            env[key] = value
        elif key in host:
            env[key] = host[key]
    return tuple(env.items())


def terminal_env(env: tuple[tuple[str, str], ...],
                 host: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """With -t: TERM as ours (xterm without one, as docker sets), unless the image or -e set it."""
    if any(key == "TERM" for key, _ in env):
        return env
    return (*env, ("TERM", host.get("TERM") or "xterm"))


def rootfs(root: Path, container: Container) -> RootFS:
    """The container's overlay: its image's layer dirs (top first) under its own upper dir."""
    from minibuild.store.layout import Store

    store = Store(root)  # paths only: a supervisor must not hold the store's locks
    lowers = tuple(store.layer_path(d) for d in reversed(container.diff_ids))
    upper, work, merged = Containers(root).dirs(container.id)
    return RootFS(lowers, upper, work, merged)


def process(container: Container, stdio: tuple[int, int, int] | None,
            console: int | None = None) -> Process:
    """The sandbox process of a container: its own stdio fds, or with `console` a pty of its
    own (console.py) whose master goes back on that socket."""
    return Process(argv=container.argv, env=container.env, cwd=container.cwd, make_cwd=True,
                   user=container.user or None, network=container.network,
                   hostname=container.hostname or container.short_id, stdio=stdio,
                   tty=console is not None, console=console, pid1=True)


def limits(container: Container) -> Limits:
    """The container's cgroup: its limits, and the freezer `pause` and `commit` use (where the
    host has one: without it the container runs, and `pause` says why it cannot)."""
    given = container.limits
    return replace(given, freezer=True, optional=given.optional | {"freezer"})


# -- supervising ---------------------------------------------------------------------------------


def supervise(root: Path, container: Container, stdio: tuple[int, int, int] | None, *,
              console: int | None = None, on_started: Callable[[], None] | None = None) -> int:
    """Run the container to its end under its lock, recording running then exited; its status
    (`console`: the socket of a Terminal, for a pty made inside, instead of `stdio`)."""
    containers = Containers(root)
    lock = containers.supervise(container.id)
    try:
        scrub_scaffolds(containers.path(container.id))
        _clear_work(containers.dirs(container.id)[1])

        def started(pid: int) -> None:
            nonlocal container
            container = replace(container, name=_current_name(containers, container),
                                state="running", pid=pid,
                                pid_start=process_start_time(pid), started=now(),
                                finished=None, exit_code=None)
            containers.save(container)
            if on_started is not None:
                on_started()

        status = 255
        fs = rootfs(root, container)
        try:
            attached = attach(root, fs, container)
            _prepare_root(root, fs, container, attached)
            # its network lives as long as this supervisor runs it (and -p forwards into it)
            with Networks(container.ports) as networks, \
                    idranges.for_mode(container.userns) or contextlib.nullcontext() as userns:
                status = Sandbox(image_lookup=layerpath.resolve, security=container.security,
                                 networks=networks, limits=limits(container), userns=userns).run(
                    fs, process(container, stdio, console), lambda data: None, on_start=started,
                    mounts=attached.mounts)
        finally:
            _record_exit(root, containers, container, status)
        return status
    finally:
        lock.release()


def _prepare_root(root: Path, fs: RootFS, container: Container, attached: Attached) -> None:
    """Before the container starts, in one child with its root mounted: seed its empty volumes
    from the image (under the volumes lock: one seeder per volume), and create a missing
    working directory (docker does) through the overlay, so parents copy up; one inside a
    mount is the mount's business."""
    from minibuild.layer.diffview import lower_stat

    parts = tuple(p for p in container.cwd.split("/") if p)
    workdir = bool(parts) and not covered(container.cwd, container.mounts) and lower_stat(
        (fs.upper, *fs.lowers), parts) is None
    if not workdir and not attached.seeds:
        return
    relative = os.path.join(*parts) if workdir else ""
    merged = os.path.abspath(fs.merged)
    with Volumes(root).locked() if attached.seeds else contextlib.nullcontext():
        Sandbox().call(fs, lambda: os.makedirs(relative, 0o755, exist_ok=True) if workdir else None,
                       pre_chroot=lambda: seed(merged, attached.seeds))


def _record_exit(root: Path, containers: Containers, container: Container, status: int) -> None:
    """exited + status; with --rm, the container and its anonymous volumes go away instead."""
    if not containers.path(container.id).is_dir():
        return  # removed meanwhile (rm -f)
    if container.auto_remove:
        containers.remove(container.id)
        Volumes(root).drop_anonymous(container, containers.all())
        return
    containers.save(replace(container, name=_current_name(containers, container),
                            state="exited", exit_code=status, finished=now()))


def _current_name(containers: Containers, container: Container) -> str:
    """The container's name as its record says now (`rename` may have changed it meanwhile)."""
    try:
        return containers.load(container.id).name
    except ContainerError:
        return container.name


def _clear_work(work: Path) -> None:
    """Empty the overlay work dir a previous run left (overlay wants it clean of its index)."""
    from minibuild.fs.files import remove_tree

    for entry in work.iterdir():
        remove_tree(entry)


def run_detached(root: Path, container: Container, *, tty_: bool = False,
                 timeout: float = 30.0) -> None:
    """Start a supervisor in a session of its own (outliving us); return once the container runs."""
    containers = Containers(root)
    read_end, write_end = os.pipe()
    supervisor_log = open(containers.path(container.id) / "supervisor.log", "ab")
    try:
        argv = [sys.executable, "-m", "minibuild", "--root", str(root), "container-supervise",
                container.id, "--notify-fd", str(write_end)] + (["--tty"] if tty_ else [])
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=supervisor_log,
                         stderr=supervisor_log, pass_fds=(write_end,), start_new_session=True,
                         close_fds=True)
    finally:
        os.close(write_end)
        supervisor_log.close()
    try:
        message = _read_all(read_end, timeout)
    finally:
        os.close(read_end)
    if message.strip() != b"ok":
        text = message.decode(errors="replace").strip() or _last_line(
            containers.path(container.id) / "supervisor.log")
        raise ContainerError(f"container {container.short_id} did not start: {text}")


def supervise_detached(root: Path, container_id: str, notify_fd: int, tty_: bool) -> int:
    """The body of the detached supervisor: log to the container's log, tell `run` it started."""
    containers = Containers(root)
    try:
        container = containers.load(container_id)
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException as exc:
        _notify(notify_fd, f"error: {exc}")
        raise
    notified = False

    def started() -> None:
        nonlocal notified
        _notify(notify_fd, "ok")
        notified = True

    try:
        if tty_:
            return run_terminal(root, container, None, None, on_started=started)
        return run_logged(root, container, devnull, tee=False, on_started=started)
    except BaseException as exc:
        if not notified:
            _notify(notify_fd, f"error: {exc}")
        raise


def run_logged(root: Path, container: Container, stdin: int, *, tee: bool,
               on_started: Callable[[], None] | None = None) -> int:
    """supervise with the command's stdout and stderr piped into the container's log (and
    copied to ours when `tee`: a foreground run); its status."""
    with LogWriter(Containers(root).log_path(container.id)) as log, \
            Capture(log, (1, 2) if tee else (None, None)) as capture:
        return supervise(root, container, (stdin, *capture.fds), on_started=on_started)


def run_terminal(root: Path, container: Container, input_fd: int | None,
                 output_fd: int | None, on_started: Callable[[], None] | None = None) -> int:
    """supervise with a pty of the container's own, its output into the log (and to
    `output_fd`), `input_fd` (a terminal: raw while it runs) into it; its status."""
    with LogWriter(Containers(root).log_path(container.id)) as log, \
            Terminal(input_fd, output_fd, console=True, log=log.stdout) as term:
        return supervise(root, container, None, console=term.console_fd, on_started=on_started)


def _notify(fd: int, text: str) -> None:
    """Tell the waiting `run -d` how the start went (once), then close the pipe."""
    try:
        os.write(fd, text.encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def _read_all(fd: int, timeout: float) -> bytes:
    """Read a pipe to its first line, EOF or `timeout` (the sandbox's helpers inherit the
    write end, so EOF would wait for the container's end)."""
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


def _last_line(path: Path) -> str:
    """The last line of a file, for an error message."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no message"
    return lines[-1] if lines else "the supervisor exited without a message"
