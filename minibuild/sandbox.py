"""Run a build step (or a Python callable) inside an image: overlayfs + chroot + namespaces.

Every mount lives only in a forked child's private mount namespace, so when minibuild dies, even
by SIGKILL, the kernel tears the mounts down with the child. The process tree of `run`:

    P (caller) ── C: PDEATHSIG, unshare(mnt,pid,uts,ipc[,net]), mount overlay, hostname
                   └─ I: pid 1 of the new pid ns: /proc, /dev, chroot, resolve user, reap
                       └─ X: the step's command (execve)

When I exits the kernel kills everything left in the step's pid namespace. The forked children
never touch Python locks or sys.stdout: they use raw fds and always leave through os._exit.
Caveats for callers: PDEATHSIG fires when the *thread* that forked exits (a caller blocked in
run/call is fine), and `call`'s fn runs in a fork, so it must not take locks that other threads
of the parent may hold (logging handlers, rich consoles).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import pickle
import select
import shutil
import signal
import socket
import stat
import struct
import tempfile
import termios
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from minibuild.errors import BuildError, MinibuildError, SandboxError
from minibuild.users import ResolvedUser, read_user_files, resolve_user

# -- libc, loaded before any fork --------------------------------------------------------------

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc: the running program's symbols include its libc
    _libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)
_libc.syscall.restype = ctypes.c_long
_libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
_libc.signal.restype = ctypes.c_void_p

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC = 2, 4, 8, 16384
MS_BIND, MS_PRIVATE, MS_STRICTATIME = 4096, 1 << 18, 1 << 24
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
# What a step's command may hold: Docker's default set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
# SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, AUDIT_WRITE, SETFCAP) minus MKNOD and
# SYS_CHROOT: without a device cgroup a new device node opens the host's disks, and chroot(2)
# inside our chroot escapes it. No SYS_ADMIN: no mount, umount or remount from inside.
STEP_CAPABILITIES = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 29, 31})
# The new mount API has the same syscall numbers on every architecture.
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = 1, 1, 4
FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 1, 6
AT_FDCWD = -100
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1

PAGE_LIMIT = 4096  # mount(2) copies at most one page of option data
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERLAY_PARAMS = Path("/sys/module/overlay/parameters")
# (module parameter that proves the kernel knows the option, option, value)
_FEATURES = (("redirect_dir", "redirect_dir", "off"), ("metacopy", "metacopy", "off"),
             ("index", "index", "off"), ("xino_auto", "xino", "off"))
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
_ETC_FILES = ("hosts", "resolv.conf")
_SETUP_FAILED = 125  # a child's exit code when it reported an error on the info pipe
_MSG_PID, _MSG_ERROR = b"P", b"E"
_SPECIAL = "\\,:"  # escaped in mount(2) data: the escape itself, option and layer separators
_MAXFD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootFS:
    """The dirs of one overlay mount (an empty upper gets the image root's mode and owner)."""

    lowers: tuple[Path, ...]  # image layer dirs, TOP FIRST; may be empty (FROM scratch)
    upper: Path  # existing empty-or-not dir that takes every write
    work: Path  # existing empty dir on the same fs as upper (overlay workdir)
    merged: Path  # existing empty dir used as the mount point


@dataclass(frozen=True)
class Process:
    """What to run inside the root and how."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # exactly this, plus PATH and HOME when absent
    cwd: str = "/"  # must exist inside the root
    user: str | None = None  # name, uid, name:group, uid:gid (through the image's passwd/group)
    network: str = "host"  # "host" or "none" (own net namespace with only lo, up)
    hostname: str = "minibuild"
    stdin: bytes | None = None  # fed to the process, else /dev/null
    # caller's fds given to the process as 0, 1, 2 (a container's terminal or log) instead of
    # the stdin feed and the streamed output pipe; `tty`: stdio[0] becomes its controlling tty
    stdio: tuple[int, int, int] | None = None
    tty: bool = False


@dataclass(frozen=True)
class OverlayOptions:
    """Everything that goes into one overlay mount, whichever mount API carries it."""

    lowers: tuple[str, ...]  # top first
    upper: str
    work: str
    extra: tuple[tuple[str, str], ...] = ()

    def fsconfig_pairs(self) -> tuple[tuple[str, str], ...]:
        """(key, value) for fsconfig(FSCONFIG_SET_STRING): one `lowerdir+` per layer, no limit."""
        # lowerdir+ takes the path verbatim; upperdir/workdir are still unescaped by the kernel.
        dirs = (("upperdir", _escape(self.upper, "\\")), ("workdir", _escape(self.work, "\\")))
        return (*(("lowerdir+", lower) for lower in self.lowers), *dirs, *self.extra)

    def mount_data(self, lowers: Sequence[str]) -> str:
        """mount(2) data, with `lowers` (e.g. relative forms of self.lowers) as the lowerdirs."""
        lowerdir = ":".join(_escape(p, _SPECIAL) for p in lowers)
        upper, work = _escape(self.upper, _SPECIAL), _escape(self.work, _SPECIAL)
        parts = [f"lowerdir={lowerdir}", f"upperdir={upper}", f"workdir={work}"]
        return ",".join(parts + [f"{key}={value}" for key, value in self.extra])

    def relative_lowers(self) -> tuple[str, tuple[str, ...]]:
        """(common parent of the lowers, each lower relative to it)."""
        base = os.path.commonpath(self.lowers)
        return base, tuple(os.path.relpath(p, base) for p in self.lowers)

    def describe(self, limit: int = 300) -> str:
        """The options for an error message, the lowerdir list shortened."""
        lowers = ":".join(self.lowers)
        if len(self.lowers) > 2:
            lowers = f"{self.lowers[0]}:...({len(self.lowers) - 2} more):{self.lowers[-1]}"
        extra = "".join(f",{key}={value}" for key, value in self.extra)
        text = f"lowerdir={lowers},upperdir={self.upper},workdir={self.work}{extra}"
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _escape(path: str, chars: str) -> str:
    """Backslash-escape `chars` the way overlayfs unescapes its option values."""
    return "".join("\\" + c if c in chars else c for c in path)


def overlay_extra_options(params: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The tar-safe options this kernel knows, given its overlay module parameter names."""
    known = set(params)
    return tuple((option, value) for param, option, value in _FEATURES if param in known)


@functools.cache
def kernel_overlay_params() -> frozenset[str]:
    """Names under /sys/module/overlay/parameters (empty when the module exposes none)."""
    try:
        return frozenset(p.name for p in OVERLAY_PARAMS.iterdir())
    except OSError:
        return frozenset()


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


def check_support() -> None:
    """Raise SandboxError unless we are root and the kernel has overlayfs."""
    if os.geteuid() != 0:
        raise SandboxError("minibuild build needs root (overlayfs mounts and chroot)")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        raise SandboxError(f"cannot read /proc/filesystems: {exc.strerror}") from exc
    if not any(line.split()[-1:] == ["overlay"] for line in filesystems.splitlines()):
        raise SandboxError("overlayfs is not available: 'overlay' is not in /proc/filesystems "
                           "(try `modprobe overlay`)")


# -- scaffold: mount points and /etc files that must not leak into the layer --------------------


def _image_entry(lowers: Sequence[Path], name: str) -> os.stat_result | None:
    """lstat of the topmost lower's `name`; None when absent or whited out (char 0:0)."""
    for lower in lowers:
        try:
            st = os.lstat(lower / name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None
        return st
    return None


def _copy_meta(st: os.stat_result | None, path: Path) -> None:
    """Give `path` the image's owner, mode and times, so a copy-up carries them, not ours."""
    if st is None or not stat.S_ISDIR(st.st_mode):
        return
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _write(path: Path, data: bytes) -> None:
    """Create a 0644 file holding `data`."""
    path.write_bytes(data)
    os.chmod(path, 0o644)


def make_scaffold(parent: Path, lowers: Sequence[Path], hostname: str, resolv: bytes) -> Path:
    """A lowerdir to stack above the image: proc/, dev/, etc/resolv.conf and etc/hosts."""
    root = Path(tempfile.mkdtemp(prefix=".minibuild-scaffold-", dir=parent))
    os.chmod(root, 0o755)
    for name in ("proc", "dev"):
        (root / name).mkdir(0o755)
        _copy_meta(_image_entry(lowers, name), root / name)
    etc = _image_entry(lowers, "etc")
    if etc is None or stat.S_ISDIR(etc.st_mode):  # an /etc symlink or file stays the image's
        (root / "etc").mkdir(0o755)
        # bind-mounted over the merged view too (see _bind_etc_files): edits stay out of the layer
        _write(root / "etc" / "resolv.conf", resolv)
        _write(root / "etc" / "hosts", f"127.0.0.1\tlocalhost {hostname}\n"
               f"::1\tlocalhost ip6-localhost ip6-loopback\n".encode())
        _copy_meta(etc, root / "etc")
    return root


def _prepare_upper(rootfs: RootFS) -> None:
    """Give an empty upper the image root's mode/owner: overlay shows `/` with the upper's."""
    if any(rootfs.upper.iterdir()):
        return
    st = os.stat(rootfs.lowers[0]) if rootfs.lowers else None
    uid, gid, mode = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) if st else (0, 0, 0o755)
    os.chown(rootfs.upper, uid, gid)
    os.chmod(rootfs.upper, mode)


def _check_rootfs(rootfs: RootFS) -> None:
    """Fail early, in the parent, on a missing dir."""
    named = [("upper", rootfs.upper), ("work", rootfs.work), ("merged", rootfs.merged)]
    for what, path in named + [("lower", p) for p in rootfs.lowers]:
        if not os.path.isdir(path):
            raise SandboxError(f"overlay {what} dir {path} does not exist or is not a directory")
    if len(rootfs.lowers) > 499:
        raise SandboxError(f"too many layers ({len(rootfs.lowers)}): overlayfs stacks at most 500")


# -- syscalls ------------------------------------------------------------------------------------


def _os_error(what: str) -> OSError:
    """The OSError for the errno a failed libc call left."""
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def _syscall(number: int, *args: int | bytes | None) -> int:
    """syscall(2) with every integer passed as a long; raises OSError."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    ret = _libc.syscall(ctypes.c_long(number), *conv)
    if ret < 0:
        raise _os_error(f"syscall {number}")
    return ret


def _mount(source: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    """mount(2); raises OSError."""
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                   None if data is None else os.fsencode(data)) != 0:
        raise _os_error(f"mount {fstype} on {target}")


def _unshare(flags: int) -> None:
    """unshare(2); raises SandboxError."""
    if _libc.unshare(flags) != 0:
        raise SandboxError(f"cannot create namespaces: {_os_error('unshare').strerror}")


def _kernel_log(fd: int) -> str:
    """The messages an fs context fd collected (why fsconfig/fsmount failed)."""
    lines = []
    for _ in range(16):
        try:
            lines.append(os.read(fd, 4096).decode(errors="replace").strip())
        except OSError:
            break
    return "; ".join(line for line in lines if line)


def _fsconfig(fd: int, key: str, value: str) -> None:
    """fsconfig(FSCONFIG_SET_STRING, key, value)."""
    _syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)


@functools.cache
def new_mount_api() -> bool:
    """True when fsopen works and overlay accepts `lowerdir+` (Linux >= 6.8)."""
    try:
        fd = _syscall(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    except OSError:
        return False
    try:
        _fsconfig(fd, "lowerdir+", "/")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _mount_overlay_new(options: OverlayOptions, merged: str) -> None:
    """fsopen + one fsconfig per option + fsmount + move_mount: no page limit."""
    fd = _syscall(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    try:
        try:
            for key, value in options.fsconfig_pairs():
                _fsconfig(fd, key, value)
            _syscall(SYS_FSCONFIG, fd, FSCONFIG_CMD_CREATE, None, None, 0)
            mnt = _syscall(SYS_FSMOUNT, fd, FSMOUNT_CLOEXEC, 0)
        except OSError as exc:
            raise _mount_error(options, merged, exc, _kernel_log(fd)) from exc
        try:
            _syscall(SYS_MOVE_MOUNT, mnt, b"", AT_FDCWD, os.fsencode(merged),
                     MOVE_MOUNT_F_EMPTY_PATH)
        except OSError as exc:
            raise _mount_error(options, merged, exc, "") from exc
        finally:
            os.close(mnt)
    finally:
        os.close(fd)


def _fits(data: str) -> bool:
    """Whether mount(2) data fits in the one page the kernel copies."""
    return len(os.fsencode(data)) + 1 <= PAGE_LIMIT


def _mount_overlay_legacy(options: OverlayOptions, merged: str) -> None:
    """mount(2), lowerdirs relative to their common parent, else to /proc/self/fd (short)."""
    base, relative = options.relative_lowers()
    data, fds = options.mount_data(relative), []
    try:
        if not _fits(data):  # layers far apart: name each by an O_PATH fd, ~4 bytes a layer
            fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in options.lowers]
            base, data = "/proc/self/fd", options.mount_data([str(fd) for fd in fds])
        if not _fits(data):
            raise SandboxError(f"overlay options for {len(options.lowers)} layers take "
                               f"{len(os.fsencode(data))} bytes, over mount(2)'s {PAGE_LIMIT}; "
                               "this kernel lacks the new mount API (Linux >= 6.8)")
        os.chdir(base)
        _mount("overlay", merged, "overlay", 0, data)
    except OSError as exc:
        raise _mount_error(options, merged, exc, "") from exc
    finally:
        for fd in fds:
            os.close(fd)


def _mount_error(options: OverlayOptions, merged: str, exc: OSError, log: str) -> SandboxError:
    """A SandboxError naming the mount point, the kernel's reason and the options."""
    why = f"{os.strerror(exc.errno)}" + (f" ({log})" if log else "")
    return SandboxError(f"cannot mount overlay on {merged}: {why}; options: {options.describe()}")


def _mount_overlay(options: OverlayOptions, merged: str, new_api: bool) -> None:
    """Mount the overlay on `merged` in the current (private) mount namespace."""
    if new_api:
        _mount_overlay_new(options, merged)
    else:
        _mount_overlay_legacy(options, merged)


def _private_mounts() -> None:
    """Stop mount events propagating back to the host's namespace."""
    try:
        _mount("none", "/", "", MS_REC | MS_PRIVATE, None)
    except OSError as exc:
        raise SandboxError(f"cannot make / private in the sandbox: {exc.strerror}") from exc


# -- messages from children (info pipe): I's host pid, or a pickled error ------------------------


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    """Write one framed message; a single write keeps small frames atomic."""
    data = memoryview(kind + struct.pack("<I", len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _report(fd: int, exc: BaseException) -> None:
    """Send an exception to the parent: its name, its text and, if it pickles, itself."""
    try:
        try:
            blob: bytes | None = pickle.dumps(exc)
        except Exception:
            blob = None
        _send(fd, _MSG_ERROR, pickle.dumps((type(exc).__name__, str(exc), blob)))
    except BaseException:
        pass  # the parent then sees exit status 125 without a message


def _error_from(payload: bytes) -> MinibuildError:
    """Rebuild a child's exception: MinibuildErrors as they were, others as BuildError."""
    name, text, blob = pickle.loads(payload)
    try:
        exc = pickle.loads(blob) if blob else None
    except Exception:
        exc = None
    if isinstance(exc, MinibuildError):
        return exc
    error = BuildError(text or name)
    error.__cause__ = exc
    return error


class _Messages:
    """Accumulates info-pipe bytes into I's pid and the errors the children reported."""

    def __init__(self) -> None:
        self.buffer = b""
        self.init_pid: int | None = None
        self.errors: list[MinibuildError] = []

    def feed(self, data: bytes) -> None:
        """Take more bytes; decode every complete frame."""
        self.buffer += data
        while len(self.buffer) >= 5:
            size = struct.unpack("<I", self.buffer[1:5])[0]
            if len(self.buffer) < 5 + size:
                return
            kind, payload = self.buffer[:1], self.buffer[5:5 + size]
            self.buffer = self.buffer[5 + size:]
            if kind == _MSG_PID:
                self.init_pid = struct.unpack("<q", payload)[0]
            else:
                self.errors.append(_error_from(payload))


# -- in the children ---------------------------------------------------------------------------


def _child_main(pipes: _Pipes, body: Callable[[], int]) -> NoReturn:
    """Run a forked child's body; report any exception; never return into the caller's code."""
    code = _SETUP_FAILED
    try:
        try:
            code = body()
        except BaseException as exc:
            info = pipes.get("info_w")  # looked up late: X moves it to fd 3
            if info is not None:
                _report(info, exc)
    finally:
        os._exit(code)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL us when the parent dies, and leave if it already did before we asked."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(_SETUP_FAILED)


def _die_with_init_parent(lifeline: int) -> None:
    """PDEATHSIG for pid 1 of a new pid ns (getppid() is 0 there): EOF on a pipe only C holds."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([lifeline], [], [], 0)[0]:
        os._exit(_SETUP_FAILED)
    os.close(lifeline)


def _quiet_signals() -> None:
    """Helpers ignore Ctrl-C (the parent decides); Python handlers must not run in a fork."""
    for sig in range(1, signal.NSIG):
        try:
            handler = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if callable(handler) and sig != signal.SIGCHLD:
            _libc.signal(sig, 1)  # SIG_IGN
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        _libc.signal(sig, 1)


def _drop_capabilities(keep: frozenset[int] = STEP_CAPABILITIES) -> None:
    """Shrink the bounding set: after execve even root holds no capability outside `keep`."""
    for cap in range(64):
        if cap in keep:
            continue
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                return  # past the kernel's last capability
            raise SandboxError(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")


def _default_signals() -> None:
    """The command starts with default dispositions and nothing blocked (Python ignores SIGPIPE)."""
    for sig in range(1, signal.NSIG):
        _libc.signal(sig, 0)  # SIG_DFL; fails harmlessly for SIGKILL/SIGSTOP
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _mount_proc_dev() -> None:
    """Inside the chroot: a /proc of the new pid ns and a minimal /dev (paths resolve in root)."""
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
        for name, major, minor in _DEVICES:
            os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)  # mknod obeys the umask
        os.mkdir("/dev/pts", 0o755)
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620")
        os.mkdir("/dev/shm")
        os.chmod("/dev/shm", 0o1777)
        _mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "mode=1777,size=65536k")
        for name, target in _DEV_LINKS:
            os.symlink(target, f"/dev/{name}")
    except OSError as exc:
        raise SandboxError(f"cannot set up /proc and /dev in the sandbox: {exc}") from exc


def _open_etc_files(scaffold: str) -> dict[str, int]:
    """O_PATH fds on the scaffold's etc files, to bind-mount them once inside the chroot."""
    fds = {}
    for name in _ETC_FILES:
        try:
            fds[name] = os.open(os.path.join(scaffold, "etc", name), os.O_PATH)
        except FileNotFoundError:
            continue  # the image's /etc is a symlink: no scaffold etc
    return fds


def _bind_etc_files(fds: dict[str, int]) -> None:
    """Bind our hosts/resolv.conf over the image's, so a step's edits never reach the layer."""
    for name, fd in fds.items():
        target = f"/etc/{name}"
        try:
            if stat.S_ISREG(os.stat(target).st_mode):  # resolved inside the root
                _mount(f"/proc/self/fd/{fd}", target, "", MS_BIND, None)
        except OSError as exc:
            raise SandboxError(f"cannot bind-mount {target} in the sandbox: {exc}") from exc
        finally:
            os.close(fd)


def _reap_until(pid: int) -> int:
    """As pid 1: reap every zombie until `pid` exits; its exit status."""
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return exit_status(status)


class _Pipes:
    """Named pipe ends shared by the parent and the helper tree; each side closes the others'."""

    def __init__(self, *names: str) -> None:
        self.fds: dict[str, int] = {}
        try:
            for name in names:
                self.fds[f"{name}_r"], self.fds[f"{name}_w"] = os.pipe()
        except BaseException:
            self.close(*self.fds)
            raise

    def get(self, end: str) -> int | None:
        """The fd of a pipe end, or None if absent or closed."""
        return self.fds.get(end)

    def close(self, *ends: str) -> None:
        """Close these ends (absent or already closed ones are skipped)."""
        for end in ends:
            fd = self.fds.pop(end, None)
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> _Pipes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(*list(self.fds))


@dataclass(frozen=True)
class _RunPlan:
    """What the helper tree of one `run` needs, decided in the parent."""

    overlay: OverlayOptions
    merged: str
    process: Process
    parent_pid: int
    new_api: bool
    scaffold: str


def _namespace_child(plan: _RunPlan, pipes: _Pipes) -> int:
    """C: namespaces + overlay, then fork I and relay its exit status."""
    _die_with_parent(plan.parent_pid)
    _quiet_signals()
    pipes.close("out_r", "info_r", "stdin_w", "ack_w")
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
    _unshare(flags | (CLONE_NEWNET if plan.process.network == "none" else 0))
    _private_mounts()
    _mount_overlay(plan.overlay, plan.merged, plan.new_api)
    try:
        socket.sethostname(plan.process.hostname)
        if plan.process.network == "none":
            _loopback_up()
    except OSError as exc:
        raise SandboxError(f"cannot set up hostname/network in the sandbox: {exc}") from exc
    lifeline, keep = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(keep)
        _child_main(pipes, lambda: _init(plan, pipes, lifeline))
    os.close(lifeline)
    _send(pipes.fds["info_w"], _MSG_PID, struct.pack("<q", pid))
    pipes.close("out_w", "info_w", "stdin_r")
    os.read(pipes.fds["ack_r"], 1)  # reap I only once P holds a pidfd on it: no pid reuse race
    return exit_status(os.waitpid(pid, 0)[1])


def _init(plan: _RunPlan, pipes: _Pipes, lifeline: int) -> int:
    """I, pid 1 of the step: /proc, /dev, chroot, user; fork X and reap until X exits."""
    _die_with_init_parent(lifeline)
    pipes.close("ack_r")
    etc_files = _open_etc_files(plan.scaffold)
    os.chroot(plan.merged)
    os.chdir("/")
    _mount_proc_dev()
    _bind_etc_files(etc_files)
    user = resolve_user(plan.process.user or "", *read_user_files(Path("/")))
    env = process_environment(plan.process.env, user.default_home())
    pid = os.fork()
    if pid == 0:
        _child_main(pipes, lambda: _exec_command(plan.process, user, env, pipes))
    pipes.close("out_w", "stdin_r", "info_w")
    return _reap_until(pid)


def _wire_stdio(pipes: _Pipes, stdio: tuple[int, int, int] | None = None) -> None:
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


def _exec_command(process: Process, user: ResolvedUser, env: dict[str, str],
                  pipes: _Pipes) -> int:
    """X: wire fds, drop to the user, chdir, execve; returns only when execve failed."""
    _wire_stdio(pipes, process.stdio)
    _default_signals()
    if process.tty:
        _controlling_tty()
    try:
        os.chdir(process.cwd)
    except OSError as exc:
        raise BuildError(f"cannot use working directory {process.cwd!r}: {exc.strerror}") from exc
    _drop_capabilities()
    os.setgroups(list(user.process_groups()))
    os.setgid(user.gid)
    os.setuid(user.uid)
    try:
        os.execvpe(process.argv[0], list(process.argv), env)
    except OSError as exc:
        message, code = exec_failure(process.argv[0], exc.errno or errno.ENOENT)
        os.write(2, message)
        return code
    return _SETUP_FAILED  # not reached: execvpe returns only by raising


def _controlling_tty() -> None:
    """Make fd 0 (a pty slave) our controlling terminal, in a session of our own."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass(frozen=True)
class _CallPlan:
    """What the helper of one `call` needs."""

    overlay: OverlayOptions
    merged: str
    cwd: str | None
    parent_pid: int
    new_api: bool
    source: tuple[OverlayOptions, str] | None = None  # a second overlay (COPY --from), + where
    pre_chroot: Callable[[], None] | None = None


def _call_child(plan: _CallPlan, pipes: _Pipes, fn: Callable[[], None]) -> int:
    """C for `call`: own mount ns + overlay, chdir(cwd) then chroot, run fn."""
    _die_with_parent(plan.parent_pid)
    _quiet_signals()
    pipes.close("info_r")
    _unshare(CLONE_NEWNS)
    _private_mounts()
    _mount_overlay(plan.overlay, plan.merged, plan.new_api)
    if plan.source is not None:
        _mount_overlay(plan.source[0], plan.source[1], plan.new_api)
    if plan.cwd is not None:
        os.chdir(plan.cwd)
    if plan.pre_chroot is not None:
        plan.pre_chroot()
    os.chroot(plan.merged)
    if plan.cwd is None:
        os.chdir("/")
    fn()
    return 0


# -- in the parent -------------------------------------------------------------------------------


class _Feeder:
    """Writes the step's stdin without blocking, so a chatty process cannot deadlock us."""

    def __init__(self, fd: int, data: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd, self.data, self.pos = fd, memoryview(data), 0

    def step(self) -> bool:
        """Write what the pipe takes; True when everything is written or the reader is gone."""
        try:
            self.pos += os.write(self.fd, self.data[self.pos:self.pos + 65536])
        except BlockingIOError:
            return False
        except (BrokenPipeError, ConnectionResetError):
            return True
        return self.pos >= len(self.data)


class _Step:
    """The parent's handle on a helper tree: streams its pipes, stops and reaps it."""

    def __init__(self, pid: int, pipes: _Pipes,
                 on_start: Callable[[int], None] | None = None) -> None:
        self.pid: int | None = pid
        self.pipes = pipes
        self.messages = _Messages()
        self.init_fd: int | None = None
        self.on_start = on_start

    def pump(self, stdin: bytes | None, on_output: Callable[[bytes], None]) -> None:
        """Relay output and info until both pipes reach EOF, feeding stdin meanwhile."""
        poller = select.poll()
        ends = (self.pipes.get("out_r"), self.pipes.get("info_r"))
        readers = {fd for fd in ends if fd is not None}
        for fd in readers:
            poller.register(fd, select.POLLIN)
        feeder = _Feeder(self.pipes.fds["stdin_w"], stdin) if stdin is not None else None
        if feeder is not None:
            poller.register(feeder.fd, select.POLLOUT)
        while readers:
            for fd, _ in poller.poll():
                if feeder is not None and fd == feeder.fd:
                    if feeder.step():
                        poller.unregister(fd)
                        self.pipes.close("stdin_w")
                        feeder = None
                    continue
                data = os.read(fd, 65536)
                if not data:
                    poller.unregister(fd)
                    readers.discard(fd)
                elif fd == self.pipes.get("out_r"):
                    on_output(data)
                else:
                    self._on_info(data)

    def _on_info(self, data: bytes) -> None:
        """Decode messages; hold I by a pidfd before letting C reap it (ack)."""
        self.messages.feed(data)
        if self.messages.init_pid is not None and self.init_fd is None:
            self.init_fd = os.pidfd_open(self.messages.init_pid)
            if self.on_start is not None:  # before the ack: I cannot be reaped (pid reused) yet
                self.on_start(self.messages.init_pid)
            os.write(self.pipes.fds["ack_w"], b"k")

    def wait(self) -> int:
        """Reap C; its raw wait status."""
        assert self.pid is not None
        status = os.waitpid(self.pid, 0)[1]
        self.pid = None
        return status

    def stop(self) -> None:
        """Kill the step's pid-ns init (the kernel kills the rest) or C, and reap C."""
        if self.pid is None:
            return
        if self.init_fd is not None:
            _signal_pidfd(self.init_fd)
            if _reaped_within(self.pid, 2.0):
                self.pid = None
                return
        _kill(self.pid)
        _reap(self.pid)
        self.pid = None

    def close(self) -> None:
        """Release every fd the parent holds."""
        self.pipes.close(*list(self.pipes.fds))
        if self.init_fd is not None:
            os.close(self.init_fd)
            self.init_fd = None

    def raise_reported(self) -> None:
        """Re-raise the first error a child reported."""
        if self.messages.errors:
            raise self.messages.errors[0]


def _signal_pidfd(fd: int) -> None:
    """SIGKILL through a pidfd (no pid reuse race); a dead process is fine."""
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill(pid: int) -> None:
    """SIGKILL our own unreaped child."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reaped_within(pid: int, seconds: float) -> bool:
    """Poll-reap a child for a while; True once it is reaped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
        time.sleep(0.002)
    return False


def _reap(pid: int) -> None:
    """Reap a SIGKILLed child even if another Ctrl-C arrives meanwhile."""
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except KeyboardInterrupt:
            continue


def _start(pipes: _Pipes, body: Callable[[], int],
           on_start: Callable[[int], None] | None = None) -> _Step:
    """Fork a helper running `body`; close the child's pipe ends in the parent."""
    pid = os.fork()
    if pid == 0:
        _child_main(pipes, body)
    step = _Step(pid, pipes, on_start)
    pipes.close("out_w", "info_w", "stdin_r", "ack_r")
    return step


def _drive(step: _Step, stdin: bytes | None, on_output: Callable[[bytes], None]) -> int:
    """Pump a started helper to its end; on any exception (Ctrl-C too) stop it first."""
    try:
        step.pump(stdin, on_output)
        status = step.wait()
    except BaseException:
        step.stop()
        raise
    finally:
        step.close()
    step.raise_reported()
    return status


def _check_process(process: Process) -> None:
    """Refuse what the helpers could only fail on later, less clearly."""
    if not process.argv or not process.argv[0]:
        raise SandboxError("nothing to run: empty command")
    if process.network not in ("host", "none"):
        raise SandboxError(f"unknown network mode {process.network!r} (want host or none)")
    if not process.cwd.startswith("/"):
        raise SandboxError(f"working directory {process.cwd!r} is not absolute")
    if not 0 < len(process.hostname.encode()) <= 64:
        raise SandboxError(f"invalid hostname {process.hostname!r}")
    if process.stdio is not None and process.stdin is not None:
        raise SandboxError("a process takes either stdin bytes or stdio fds, not both")
    if process.tty and process.stdio is None:
        raise SandboxError("a tty needs stdio fds (a pty slave)")


class Sandbox:
    """Runs commands and Python callables inside an image's root; no daemon, no mount left."""

    def __init__(self, *, mount_api: str = "auto",
                 resolv_conf: Path = Path("/etc/resolv.conf")) -> None:
        if mount_api not in ("auto", "new", "legacy"):
            raise ValueError(f"mount_api must be auto, new or legacy, not {mount_api!r}")
        self.mount_api = mount_api
        self.resolv_conf = resolv_conf

    def _new_api(self) -> bool:
        """Whether to mount with fsopen/fsconfig (no page limit) rather than mount(2)."""
        return new_mount_api() if self.mount_api == "auto" else self.mount_api == "new"

    def _overlay(self, rootfs: RootFS, lowers: Sequence[Path]) -> OverlayOptions:
        """The overlay options for these lowers (absolute paths: the legacy path chdirs)."""
        return OverlayOptions(tuple(os.path.abspath(p) for p in lowers),
                              os.path.abspath(rootfs.upper), os.path.abspath(rootfs.work),
                              overlay_extra_options(kernel_overlay_params()))

    def _resolv(self) -> bytes:
        """The host's resolv.conf, or nothing."""
        try:
            return self.resolv_conf.read_bytes()
        except OSError:
            return b""

    def run(self, rootfs: RootFS, process: Process, on_output: Callable[[bytes], None], *,
            on_start: Callable[[int], None] | None = None) -> int:
        """Run `process` in the root; stream stdout+stderr; its exit status (128+sig if killed).

        `on_start(pid)` gets the host pid of the sandbox's init (pid 1 inside) once it runs, for
        a container's `exec`/`stop`; with `process.stdio` nothing reaches `on_output`.
        """
        check_support()
        _check_process(process)
        _check_rootfs(rootfs)
        _prepare_upper(rootfs)
        scaffold = make_scaffold(rootfs.work.parent, rootfs.lowers, process.hostname,
                                 self._resolv())
        try:
            plan = _RunPlan(self._overlay(rootfs, (scaffold, *rootfs.lowers)),
                            os.path.abspath(rootfs.merged), process, os.getpid(),
                            self._new_api(), str(scaffold))
            names = ("out", "info", "ack") + (("stdin",) if process.stdin is not None else ())
            with _Pipes(*names) as pipes:
                step = _start(pipes, lambda: _namespace_child(plan, pipes), on_start)
                return exit_status(_drive(step, process.stdin, on_output))
        finally:
            shutil.rmtree(scaffold, ignore_errors=True)

    def call(self, rootfs: RootFS, fn: Callable[[], None], *, cwd: Path | None = None,
             source: RootFS | None = None, pre_chroot: Callable[[], None] | None = None) -> None:
        """Run fn in a child that did chdir(cwd) then chroot(merged); re-raise its exception.

        With `source`, a second overlay (e.g. the stage `COPY --from` reads) is mounted on
        source.merged first, and `pre_chroot` runs after chdir but before chroot, while host
        paths still resolve (it may prepare what fn needs: both run in the same child).
        """
        check_support()
        _check_rootfs(rootfs)
        _prepare_upper(rootfs)
        if source is not None:
            _check_rootfs(source)
        empty = None
        if not rootfs.lowers or (source is not None and not source.lowers):
            # overlay needs a lowerdir even FROM scratch
            empty = Path(tempfile.mkdtemp(prefix=".minibuild-empty-", dir=rootfs.work.parent))
        try:
            lowers = rootfs.lowers or (empty,)
            mounted_source = None
            if source is not None:
                mounted_source = (self._overlay(source, source.lowers or (empty,)),
                                  os.path.abspath(source.merged))
            plan = _CallPlan(self._overlay(rootfs, lowers), os.path.abspath(rootfs.merged),
                             None if cwd is None else os.path.abspath(cwd), os.getpid(),
                             self._new_api(), mounted_source, pre_chroot)
            with _Pipes("info") as pipes:
                step = _start(pipes, lambda: _call_child(plan, pipes, fn))
                status = exit_status(_drive(step, None, lambda data: None))
        finally:
            if empty is not None:
                shutil.rmtree(empty, ignore_errors=True)
        if status != 0:
            raise SandboxError(f"sandbox helper ended with status {status} and no message")
