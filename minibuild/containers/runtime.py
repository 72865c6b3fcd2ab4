"""Running containers on top of the sandbox: foreground, detached (a supervisor), exec, stop.

A container is the image's shared layer dirs as overlay lowers plus the container's own upper
dir. Whoever calls `supervise` (the `run` command itself, or a detached supervisor process in a
session of its own) holds the container's lock, runs the sandbox, and records the state; the
sandbox's PDEATHSIG chain ends the container when its supervisor dies, so no mount or process
outlives it. `exec` enters the namespaces of the container's init with setns(2).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from minibuild.sandbox import linux
from minibuild.containers.containermounts import Attached, attach, covered, seed
from minibuild.containers.records import Container, ContainerError, Containers, now, \
    process_start_time, scrub_scaffolds
from minibuild.errors import SandboxError
from minibuild.oci.image import ContainerConfig
from minibuild.sandbox.process import Process, exec_as, exit_status, process_environment
from minibuild.sandbox.sandbox import RootFS, Sandbox
from minibuild.containers.volumes import Volumes

# setns order: the pid ns applies to our children only, mnt last (it changes our root)
_NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")


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


def rootfs(root: Path, container: Container) -> RootFS:
    """The container's overlay: its image's layer dirs (top first) under its own upper dir."""
    from minibuild.store.layout import Store

    store = Store(root)  # paths only: a supervisor must not hold the store's locks
    lowers = tuple(store.layer_path(d) for d in reversed(container.diff_ids))
    upper, work, merged = Containers(root).dirs(container.id)
    return RootFS(lowers, upper, work, merged)


def process(container: Container, stdio: tuple[int, int, int], tty_: bool) -> Process:
    """The sandbox process of a container."""
    return Process(argv=container.argv, env=container.env, cwd=container.cwd, make_cwd=True,
                   user=container.user or None, network=container.network,
                   hostname=container.hostname or container.short_id, stdio=stdio, tty=tty_)


# -- supervising ---------------------------------------------------------------------------------


def supervise(root: Path, container: Container, stdio: tuple[int, int, int], *, tty_: bool = False,
              on_started: Callable[[], None] | None = None) -> int:
    """Run the container to its end under its lock, recording running then exited; its status."""
    containers = Containers(root)
    lock = containers.supervise(container.id)
    try:
        scrub_scaffolds(containers.path(container.id))
        _clear_work(containers.dirs(container.id)[1])

        def started(pid: int) -> None:
            nonlocal container
            container = replace(container, state="running", pid=pid,
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
            status = Sandbox().run(fs, process(container, stdio, tty_), lambda data: None,
                                   on_start=started, mounts=attached.mounts)
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
    containers.save(replace(container, state="exited", exit_code=status, finished=now()))


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
        log = os.open(containers.log_path(container_id),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
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
        if not tty_:
            return supervise(root, container, (devnull, log, log), on_started=started)
        with Terminal(None, log) as term:
            return supervise(root, container, term.stdio, tty_=True, on_started=started)
    except BaseException as exc:
        if not notified:
            _notify(notify_fd, f"error: {exc}")
        raise


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


# -- a pty between the user's terminal (or a log) and the container ------------------------------


class Terminal:
    """A pty whose slave is the container's stdio; a thread copies input in and output out."""

    def __init__(self, input_fd: int | None, output_fd: int) -> None:
        self.master, self.slave = os.openpty()
        self.input_fd, self.output_fd = input_fd, output_fd
        self._stop = threading.Event()
        self._saved = None
        self._thread = threading.Thread(target=self._relay, daemon=True)

    @property
    def stdio(self) -> tuple[int, int, int]:
        """The slave as 0, 1 and 2."""
        return (self.slave, self.slave, self.slave)

    def __enter__(self) -> Terminal:
        if self.input_fd is not None and os.isatty(self.input_fd):
            self._saved = termios.tcgetattr(self.input_fd)
            _copy_window_size(self.input_fd, self.master)
            tty.setraw(self.input_fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        if self._saved is not None:
            termios.tcsetattr(self.input_fd, termios.TCSADRAIN, self._saved)
        for fd in (self.master, self.slave):
            os.close(fd)

    def _relay(self) -> None:
        """Copy until told to stop and the pty has nothing more to say."""
        sources = [self.master] + ([self.input_fd] if self.input_fd is not None else [])
        while True:
            ready = select.select(sources, [], [], 0.05)[0]
            if not ready and self._stop.is_set():
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: no slave left open
                    data = b""
                if not data:
                    sources.remove(fd)
                    if fd == self.master:
                        return
                    continue
                _write_all(self.output_fd if fd == self.master else self.master, data)


def _copy_window_size(source: int, target: int) -> None:
    """The user's terminal size onto the pty."""
    import fcntl
    import struct

    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (or the reader is gone)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return


# -- exec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecTarget:
    """fds on a running container's namespaces and root, opened while its init was verified."""

    namespaces: tuple[tuple[str, int], ...]
    root: int

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
    target = ExecTarget(tuple(fds), root)
    if process_start_time(pid) != container.pid_start:  # the pid was recycled meanwhile
        target.close()
        raise ContainerError(f"container {container.name} is not running")
    return target


def exec_in(target: ExecTarget, proc: Process) -> int:
    """Run `proc` inside the container (its namespaces, root, user); its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 126
        try:
            code = _exec_child(target, proc)
        except BaseException as exc:  # noqa: BLE001 - a forked child reports and leaves
            os.write(2, f"minibuild exec: {exc}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    while True:
        try:
            return exit_status(os.waitpid(pid, 0)[1])
        except KeyboardInterrupt:
            continue  # the terminal's Ctrl-C reached the command too: wait for its status


def _exec_child(target: ExecTarget, proc: Process) -> int:
    """Forked: setns into each namespace, chroot to the container's root, fork the command."""
    linux.die_with_parent()
    for name, fd in target.namespaces:
        try:
            linux.setns(fd)
        except OSError as exc:
            raise SandboxError(f"cannot enter the container's {name} namespace: "
                               f"{os.strerror(exc.errno)}") from exc
    os.fchdir(target.root)
    os.chroot(".")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides; we relay its status
    child = os.fork()  # the pid namespace applies from our children on
    if child == 0:
        code = 126
        try:
            code = _exec_command(proc)
        finally:
            os._exit(code)
    return exit_status(os.waitpid(child, 0)[1])


def _exec_command(proc: Process) -> int:
    """Inside: stdio, user, cwd, env, execve; returns only when execve fails."""
    from minibuild.fs.users import read_user_files, resolve_user

    if proc.stdio is not None:
        for target, fd in enumerate([os.dup(fd) for fd in proc.stdio]):
            os.dup2(fd, target)
    if proc.tty:
        linux.controlling_tty()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    user = resolve_user(proc.user or "", *read_user_files(Path("/")))
    env = process_environment(proc.env, user.default_home())
    os.chdir(proc.cwd)
    return exec_as(user, proc.argv, env)


# -- stop, pause ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:
        return []


def stop(containers: Containers, container: Container, timeout: float = 10.0) -> bool:
    """STOPSIGNAL (SIGTERM) to the command, SIGKILL to its init after `timeout`; False if not running."""
    if containers.status(container) != "running":
        return False
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        return False
    try:
        if process_start_time(container.pid) != container.pid_start:
            return False
        for child in children(container.pid):
            linux.kill(child, stop_signal(container.stop_signal))
        if not select.select([pidfd], [], [], timeout)[0]:
            linux.pidfd_kill(pidfd)  # the kernel kills the whole ns
    finally:
        os.close(pidfd)
    if not containers.wait_unsupervised(container.id, 10.0):
        raise ContainerError(f"container {container.name}: its supervisor did not finish")
    return True


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


class Paused:
    """SIGSTOP every process of a running container (so its upper dir holds still), then SIGCONT."""

    def __init__(self, containers: Containers, container: Container, enabled: bool = True) -> None:
        running = enabled and containers.status(container) == "running"
        self.pids = namespace_pids(container.pid) if running and container.pid else []

    def __enter__(self) -> Paused:
        for pid in self.pids:
            linux.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self.pids:
            linux.kill(pid, signal.SIGCONT)
