"""What runs inside a root and how: the Process value, its environment, exec and exit status.

Shared by a build step's command (the sandbox) and a container's `exec` (runtime), so both
resolve PATH and HOME, switch user and report a failed execve the same way.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from minibuild.sandbox import linux
from minibuild.errors import BuildError, SandboxError
from minibuild.fs.users import ResolvedUser

if TYPE_CHECKING:
    from minibuild.sandbox.confinement import Confinement

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Process:
    """What to run inside the root and how."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # exactly this, plus PATH and HOME when absent
    cwd: str = "/"  # must exist inside the root, unless make_cwd
    make_cwd: bool = False  # a missing cwd is made (mkdir -p) after the mounts, as runc does
    user: str | None = None  # name, uid, name:group, uid:gid (through the image's passwd/group)
    # "host", "none" (a net namespace with only lo, up) or "default" (a private one with
    # slirp4netns' way out); the namespaces are the Sandbox's `networks` (see network.py)
    network: str = "host"
    hostname: str = "minibuild"
    stdin: bytes | None = None  # fed to the process, else /dev/null
    # caller's fds given to the process as 0, 1, 2 (a container's terminal or log) instead of
    # the stdin feed and the streamed output pipe; `tty`: stdio[0] becomes its controlling tty
    stdio: tuple[int, int, int] | None = None
    tty: bool = False
    # instead of stdio: a unix socket to send the master of a pty made in the root's own
    # devpts (console.py); its slave is then the command's stdio and controlling tty
    console: int | None = None
    # the command itself is pid 1 of its pid namespace (a container's, as docker's: it reaps
    # its own zombies, and ignores a signal it has no handler for); else our init reaps for it
    pid1: bool = False
    # a RUN's secrets exposed as env variables (over `env`): kept apart so that no cache key,
    # history or repr ever holds their values
    secret_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # (name, content) of executable files made in /dev/pipes/ (a RUN's `#!` heredoc, as
    # BuildKit runs it): on the sandbox's own /dev tmpfs, so never in a layer
    pipes: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # RUN --security=insecure (the build allowed security.insecure): every capability and an
    # unmasked /proc, as `docker run --privileged` (the root stays nodev, /dev minimal)
    privileged: bool = False


def check_process(process: Process) -> None:
    """Refuse what the helpers could only fail on later, less clearly."""
    if not process.argv or not process.argv[0]:
        raise SandboxError("nothing to run: empty command")
    if process.network not in ("default", "host", "none"):
        raise SandboxError(f"unknown network mode {process.network!r} "
                           "(want default, host or none)")
    if not process.cwd.startswith("/"):
        raise SandboxError(f"working directory {process.cwd!r} is not absolute")
    if not 0 < len(process.hostname.encode()) <= 64:
        raise SandboxError(f"invalid hostname {process.hostname!r}")
    if process.stdio is not None and process.stdin is not None:
        raise SandboxError("a process takes either stdin bytes or stdio fds, not both")
    if process.tty and (process.stdio is None) == (process.console is None):
        raise SandboxError("a tty needs either stdio fds (a pty slave) or a console socket")
    if any("/" in name or name in ("", ".", "..") for name, _ in process.pipes):
        raise SandboxError("a /dev/pipes file needs a plain file name")


def process_environment(env: Iterable[tuple[str, str]], home: str) -> dict[str, str]:
    """The step's environment: `env` as given, plus a default PATH and HOME when absent."""
    out = dict(env)
    out.setdefault("PATH", DEFAULT_PATH)
    out.setdefault("HOME", home)
    return out


def exec_failure(name: str, error: int) -> tuple[bytes, int]:
    """The line shown and the exit status (127 not found, 126 otherwise) when execve fails."""
    if error in (errno.ENOENT, errno.ENOTDIR):
        where = "" if "/" in name else " in $PATH"
        return f'minibuild: exec: "{name}": executable file not found{where}\n'.encode(), 127
    return f'minibuild: exec: "{name}": {os.strerror(error)}\n'.encode(), 126


def exit_status(wait_status: int) -> int:
    """A waitpid status as a shell would show it: the exit code, or 128+signal."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


# What a step's command may hold: Docker's default set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
# SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, AUDIT_WRITE, SETFCAP) minus MKNOD and
# SYS_CHROOT: without a device cgroup a new device node opens the host's disks, and chroot(2)
# inside our chroot escapes it. No SYS_ADMIN: no mount, umount or remount from inside. No NET_RAW
# (podman's choice, not Docker's): an AF_PACKET socket captured the host's loopback traffic in
# the audit. ping then needs ICMP datagram sockets, which net.ipv4.ping_group_range must allow.
STEP_CAPABILITIES = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 29, 31})


def exec_as(user: ResolvedUser, argv: Sequence[str], env: dict[str, str],
            confinement: Confinement | None = None, *, privileged: bool = False,
            keep_deathsig: bool = False) -> int:
    """Confine (Landlock, seccomp, no_new_privs), drop to the step capabilities (all kept when
    `privileged`: RUN --security=insecure), become `user` and execve argv (searching env's
    PATH); the exit status if execve fails. Build steps, `run` and `exec` all come through here.
    `keep_deathsig`: set PDEATHSIG again after the user change (which clears it), for a
    command that is its pid namespace's init and must die with the sandbox's helper.

    In a forked child only: on failure the message goes to fd 2 and the caller must os._exit.
    """
    try:
        if confinement is not None:
            confinement.before_drop()
        if not privileged:
            linux.drop_capabilities(STEP_CAPABILITIES)
    except OSError as exc:
        raise SandboxError(exc.strerror) from exc
    os.setgroups(list(user.process_groups()))
    os.setgid(user.gid)
    os.setuid(user.uid)
    if keep_deathsig:
        linux.die_with_parent()
    if confinement is not None:
        try:
            confinement.after_drop()
        except OSError as exc:
            raise SandboxError(exc.strerror) from exc
    refused = confinement.host_executables if confinement is not None else frozenset()
    return _exec_searching(argv, env, refused)


class _HostExecutable(Exception):
    """The file to run is one of the host's executables."""


def _exec_searching(argv: Sequence[str], env: dict[str, str],
                    refused: frozenset[tuple[int, int]]) -> int:
    """os.execvpe's search (first error other than not-found wins), but never running a file
    in `refused`: /proc/self/exe and /proc/1/exe are the host's Python (runc CVE-2019-5736)."""
    name = argv[0]
    paths = [name] if "/" in name else [os.path.join(d, name) for d in os.get_exec_path(env)]
    first: OSError | None = None
    last: OSError | None = None
    for path in paths:
        try:
            _check_not_host(path, refused, depth=0)
            os.execve(path, list(argv), env)
        except _HostExecutable:
            os.write(2, f'minibuild: exec: "{name}": refusing to run a host executable '
                        f'inside the sandbox\n'.encode())
            return 126
        except OSError as exc:
            last = exc
            if first is None and exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                first = exc
    error = first or last
    message, code = exec_failure(name, error.errno if error and error.errno else errno.ENOENT)
    os.write(2, message)
    return code


def _check_not_host(path: str, refused: frozenset[tuple[int, int]], depth: int) -> None:
    """Raise _HostExecutable if `path`, or the interpreter of its `#!` line (as deep as the
    kernel follows them), is a refused file. Errors are left to execve to report."""
    if not refused:
        return
    st = os.stat(path)
    if (st.st_dev, st.st_ino) in refused:
        raise _HostExecutable(path)
    if depth >= 4 or not stat.S_ISREG(st.st_mode):  # 4: the kernel's BINPRM_MAX_RECURSION
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            head = os.read(fd, 256)
        finally:
            os.close(fd)
    except OSError:
        return
    words = head[2:].split(b"\n")[0].split() if head.startswith(b"#!") else []
    if words:
        try:
            _check_not_host(os.fsdecode(words[0]), refused, depth + 1)
        except OSError:
            return


def enter_workdir(cwd: str) -> None:
    """chdir(cwd), then make sure we are still inside our root (runc's check since
    CVE-2024-21626: through a leaked fd or a magic link a path can land outside, and getcwd
    then has no path to give)."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise BuildError(f"cannot use working directory {cwd!r}: {exc.strerror}") from None
    try:
        os.getcwd()
    except OSError:
        raise BuildError(f"working directory {cwd!r} is outside the container's root") from None
