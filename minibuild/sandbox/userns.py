"""Rootless minibuild: move an unprivileged caller into a user namespace where it is root.

The namespace maps uid/gid 0 to the caller and 1..N to the caller's subordinate range from
/etc/subuid and /etc/subgid (written by the setuid helpers `newuidmap`/`newgidmap` from the
package uidmap), so every image id 0..N has a host id of its own. Inside it, the root code
paths run unchanged: overlay mounts (with `userxattr`), chroot, namespaces, chown.

One namespace per user, kept alive by a pause process (as rootless podman keeps one): every
command joins it with setns(2) before doing anything else, so a container started by `run` and
the `exec`, `stop` or `commit` that reaches it later live in the same namespace (a sibling
namespace could not enter or signal it). Its pid and start time are kept in the runtime dir
(`$XDG_RUNTIME_DIR/minibuild`, or `STORE/runtime` without one). The caller's process itself
joins, no re-exec: setns needs a single thread, which a command has before it starts anything.
"""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from minibuild.errors import SandboxError
from minibuild.fs import idmap
from minibuild.fs.lock import FileLock
from minibuild.sandbox import linux

CLONE_NEWUSER = 0x10000000
PR_SET_NAME = 15
PID_FILE = "userns.pid"


class SubRange(NamedTuple):
    """A subordinate id range of /etc/subuid or /etc/subgid."""

    start: int
    count: int


def subordinate_range(text: str, name: str, own_id: int) -> SubRange | None:
    """The first range of /etc/subuid (or subgid) text given to the user `name` or its id."""
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(own_id)):
            continue
        if fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) > 0:
            return SubRange(int(fields[1]), int(fields[2]))
    return None


def map_arguments(pid: int, own_id: int, sub: SubRange) -> list[str]:
    """newuidmap/newgidmap arguments: 0 is the caller, 1..count the subordinate range."""
    return [str(pid), "0", str(own_id), "1", "1", str(sub.start), str(sub.count)]


def expected_map(own_id: int, sub: SubRange) -> list[idmap.IdRange]:
    """The map the pause process's namespace must show."""
    return [idmap.IdRange(0, own_id, 1), idmap.IdRange(1, sub.start, sub.count)]


class Identity(NamedTuple):
    """Who the caller is and which ids it may map."""

    name: str
    uid: int
    gid: int
    subuid: SubRange
    subgid: SubRange


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise SandboxError(f"cannot read {path}: {exc.strerror}") from exc


def identity() -> Identity:
    """The caller and its subordinate ranges; SandboxError saying how to add missing ones."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    texts = _read("/etc/subuid"), _read("/etc/subgid")
    subuid = subordinate_range(texts[0], name, uid)
    subgid = subordinate_range(texts[1], name, uid)
    if subuid is None or subgid is None:
        which = " and ".join(f for f, r in (("/etc/subuid", subuid), ("/etc/subgid", subgid))
                             if r is None)
        free = free_range(texts)
        raise SandboxError(
            f"rootless minibuild needs a subordinate id range for user {name} in {which}: as "
            f"root, run `usermod --add-subuids {free} --add-subgids {free} {name}`")
    return Identity(name, uid, gid, subuid, subgid)


def free_range(texts: Sequence[str], count: int = 65536) -> str:
    """`START-END`: `count` ids from 100000 up, above every range the files give out (but the
    'containers' pool of --userns=auto, the upper half of the id space)."""
    start = 100000
    for line in "\n".join(texts).splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] != "containers" and fields[1].isdigit() \
                and fields[2].isdigit():
            start = max(start, int(fields[1]) + int(fields[2]))
    return f"{start}-{start + count - 1}"


def helpers() -> tuple[str, str]:
    """The paths of newuidmap and newgidmap; SandboxError naming the package when missing."""
    found = tuple(_which(name) for name in ("newuidmap", "newgidmap"))
    if None in found:
        raise SandboxError("rootless minibuild needs newuidmap and newgidmap, which are missing: "
                           "as root, run `apt-get install uidmap`")
    return found  # type: ignore[return-value]


def _which(name: str) -> str | None:
    """shutil.which without importing shutil (re, fnmatch: 10 ms of every rootless start)."""
    for folder in (os.environ.get("PATH") or os.defpath).split(os.pathsep) + ["/usr/bin"]:
        path = os.path.join(folder or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def runtime_dir(store_root: Path) -> Path:
    """Where the pause process is recorded: $XDG_RUNTIME_DIR/minibuild when that dir is
    ours (runuser and su keep root's), else STORE/runtime."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    try:
        if xdg.startswith("/") and os.stat(xdg).st_uid == os.getuid():
            return Path(xdg) / "minibuild"
    except OSError:
        pass
    return store_root / "runtime"


# -- the pause process -------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]


def _recorded(pid_file: Path) -> tuple[int, str] | None:
    try:
        pid, start = pid_file.read_text().split()
        return int(pid), start
    except (OSError, ValueError):
        return None


def _join(pid: int, start: str, who: Identity) -> bool:
    """setns into the pause process's user namespace; False when it is gone or not ours."""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:  # checked after the open: the fd names the process that had this start time
        if _start_time(pid) != start:
            return False
        if (idmap.read_map("uid", str(pid)) != expected_map(who.uid, who.subuid)
                or idmap.read_map("gid", str(pid)) != expected_map(who.gid, who.subgid)):
            linux.kill(pid, signal.SIGKILL)  # /etc/subuid changed: its ids are not ours now
            return False
        linux.setns(fd)
        return True
    except OSError as exc:
        raise SandboxError(f"cannot join minibuild's user namespace (pid {pid}): "
                           f"{exc.strerror}") from exc
    finally:
        os.close(fd)


def _pause_child(ready_w: int, go_r: int) -> None:
    """The pause process: a new user namespace, then `sleep infinity` once the maps are set."""
    try:
        os.setsid()  # no terminal: Ctrl-C in the caller's shell must not end it
        if os.fork():
            os._exit(0)  # the caller reaps this middle process; the pause one is orphaned
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # never hold the caller's pipes (a test waits for their EOF)
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, go_r)
        os.closerange(go_r + 1, 65536)
        os.chdir("/")
        linux.unshare(CLONE_NEWUSER)
        os.write(ready_w, str(os.getpid()).encode())
        os.close(ready_w)
        if os.read(go_r, 1) != b"k":
            os._exit(1)
        os.execv("/bin/sleep", ["minibuild-userns", "infinity"])
    finally:
        os._exit(1)


def _run_helper(path: str, args: Sequence[str]) -> None:
    import subprocess  # noqa: PLC0415 - only when a namespace is made, not at every start

    proc = subprocess.run([path, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise SandboxError(f"{os.path.basename(path)} {' '.join(args)} failed: {why[0]}")


def _start_pause(who: Identity, uidmap: str, gidmap: str) -> tuple[int, str]:
    """Start a pause process in a new user namespace and map its ids; its pid and start time."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        _pause_child(ready_w, go_r)
    os.close(ready_w)
    os.close(go_r)
    os.waitpid(middle, 0)
    try:
        text = os.read(ready_r, 32).decode()
        if not text.isdigit():
            raise SandboxError("cannot create a user namespace (unshare(CLONE_NEWUSER) failed: "
                               "are unprivileged user namespaces disabled?)",
                               hint="sysctl user.max_user_namespaces must be > 0")
        pid = int(text)
        _run_helper(uidmap, map_arguments(pid, who.uid, who.subuid))
        _run_helper(gidmap, map_arguments(pid, who.gid, who.subgid))
        start = _start_time(pid)
        os.write(go_w, b"k")
    except BaseException:
        if "pid" in locals():
            linux.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    if start is None:
        raise SandboxError("minibuild's user namespace process died while it was set up")
    return pid, start


def enter(store_root: Path) -> None:
    """Join this user's minibuild namespace (starting it first if needed) as its uid 0."""
    who = identity()
    uidmap, gidmap = helpers()
    run = runtime_dir(store_root)
    try:
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = FileLock(run / "userns.lock")
    except OSError as exc:
        raise SandboxError(f"cannot use the runtime dir {run}: {exc.strerror}") from exc
    try:
        recorded = _recorded(run / PID_FILE)
        if recorded is None or not _join(*recorded, who):
            pid, start = _start_pause(who, uidmap, gidmap)
            (run / PID_FILE).write_text(f"{pid} {start}\n")
            if not _join(pid, start, who):
                raise SandboxError("minibuild's user namespace process died while it was set up")
    finally:
        lock.release()
    os.environ[idmap.USERNS_ENV] = f"{who.uid}:{who.gid}"


def stop_pause(store_root: Path) -> bool:
    """End the recorded pause process (its namespace lives on in what still runs in it)."""
    recorded = _recorded(runtime_dir(store_root) / PID_FILE)
    if recorded is None or _start_time(recorded[0]) != recorded[1]:
        return False
    linux.kill(recorded[0], signal.SIGTERM)
    return True


def wanted(argv: Sequence[str]) -> bool:
    """Whether this command line should run in the namespace (not for help or --version)."""
    if os.geteuid() == 0 or idmap.rootless():
        return False
    args = _after_global_options(argv)
    if not args or args[0] in ("-h", "--help", "--version"):
        return False
    return not (len(args) > 1 and args[1] in ("-h", "--help"))


def _after_global_options(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    while args and args[0].startswith("--root"):
        args = args[2:] if args[0] == "--root" else args[1:]
    return args


def root_option(argv: Sequence[str]) -> str | None:
    """The store a command line names with the global --root option, if any."""
    args = list(argv)
    while args and args[0].startswith("--root"):
        if args[0] == "--root":
            return args[1] if len(args) > 1 else None
        if args[0].startswith("--root="):
            return args[0].removeprefix("--root=")
        args = args[1:]
    return None

