"""The ctypes layer: libc, loaded before any fork, and the raw kernel calls the sandbox makes.

Each wrapper is one kernel call (or a fixed few) and raises OSError; the callers decide what a
failure means. Nothing here takes a Python lock, so everything is safe in a forked child.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import termios
from collections.abc import Iterable

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc: the running program's symbols include its libc
    _libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)
_libc.syscall.restype = ctypes.c_long
_libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
_libc.signal.restype = ctypes.c_void_p

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC = 2, 4, 8, 16384
MS_BIND, MS_PRIVATE, MS_STRICTATIME = 4096, 1 << 18, 1 << 24
MS_RDONLY, MS_REMOUNT = 1, 32
MOUNT_ATTR_NODEV = 0x4
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
PR_CAPBSET_DROP = 24
SIG_DFL, SIG_IGN = 0, 1
# The new mount API has the same syscall numbers on every architecture.
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
SYS_CLOSE_RANGE = 436
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 1, 1, 4, 0x40
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
AT_FDCWD = -100
MNT_DETACH = 2
# pivot_root(2) has no libc wrapper, and its number differs per architecture
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "i686": 217,
                  "i386": 217, "armv7l": 218, "armv6l": 218, "ppc64le": 203, "ppc64": 203,
                  "s390x": 217, "mips64": 5151}.get(os.uname().machine)
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1


def os_error(what: str) -> OSError:
    """The OSError for the errno a failed libc call left."""
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def syscall(number: int, *args: int | bytes | None) -> int:
    """syscall(2) with every integer passed as a long; raises OSError."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    ret = _libc.syscall(ctypes.c_long(number), *conv)
    if ret < 0:
        raise os_error(f"syscall {number}")
    return ret


def mount(source: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    """mount(2); raises OSError."""
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                   None if data is None else os.fsencode(data)) != 0:
        raise os_error(f"mount {fstype} on {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); raises OSError (ENOSYS on an architecture we have no number for)."""
    if SYS_PIVOT_ROOT is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {os.uname().machine}")
    syscall(SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old))


def umount2(target: str, flags: int) -> None:
    """umount2(2); raises OSError."""
    if _libc.umount2(os.fsencode(target), flags) != 0:
        raise os_error(f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2); raises OSError."""
    if _libc.unshare(flags) != 0:
        raise os_error("unshare")


def setns(fd: int) -> None:
    """setns(2) into the namespace `fd` refers to; raises OSError."""
    if _libc.setns(fd, 0) != 0:
        raise os_error("setns")


def fsopen(fstype: bytes) -> int:
    """fsopen(2): a new filesystem context fd (close-on-exec)."""
    return syscall(SYS_FSOPEN, fstype, FSOPEN_CLOEXEC)


def fsconfig(fd: int, key: str, value: str | None) -> None:
    """fsconfig(FSCONFIG_SET_STRING, key, value), or FSCONFIG_SET_FLAG for a None value."""
    if value is None:
        syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_FLAG, key.encode(), None, 0)
        return
    syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)


def fsmount(fd: int, attributes: int = 0) -> int:
    """fsconfig(FSCONFIG_CMD_CREATE) then fsmount(2) with MOUNT_ATTR_* flags: a detached mount."""
    syscall(SYS_FSCONFIG, fd, FSCONFIG_CMD_CREATE, None, None, 0)
    return syscall(SYS_FSMOUNT, fd, FSMOUNT_CLOEXEC, attributes)


def move_mount(mnt: int, target: str) -> None:
    """move_mount(2) a detached mount onto `target`."""
    syscall(SYS_MOVE_MOUNT, mnt, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: SIGKILL us when the thread that forked us exits."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve never grants privileges again (setuid bits, file caps)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise os_error("cannot set no_new_privs")


def not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: only CAP_SYS_PTRACE opens our /proc/PID/{exe,root,fd,environ,mem}
    (execve of a readable file makes a process dumpable again)."""
    if _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise os_error("cannot clear the dumpable flag")


def close_from(first: int) -> None:
    """Close every fd from `first` up: close_range(2), else one by one up to the fd limit."""
    try:
        syscall(SYS_CLOSE_RANGE, first, 0xFFFFFFFF, 0)
    except OSError:  # ENOSYS before Linux 5.9
        os.closerange(first, os.sysconf("SC_OPEN_MAX"))


def drop_capabilities(keep: frozenset[int]) -> None:
    """Shrink the bounding set: after execve even root holds no capability outside `keep`."""
    for cap in range(64):
        if cap in keep:
            continue
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                return  # past the kernel's last capability
            raise os_error(f"cannot drop capability {cap}")


def set_disposition(signals: Iterable[int], handler: int) -> None:
    """signal(2) straight through libc (SIG_DFL or SIG_IGN): no Python handler involved."""
    for sig in signals:
        _libc.signal(sig, handler)  # fails harmlessly for SIGKILL/SIGSTOP


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def controlling_tty() -> None:
    """Make fd 0 (a pty slave) our controlling terminal, in a session of our own."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def kill(pid: int, sig: int) -> None:
    """kill(2), a vanished process being fine."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pidfd_kill(fd: int) -> None:
    """SIGKILL through a pidfd (no pid reuse race); a dead process is fine."""
    pidfd_send(fd, signal.SIGKILL)


def pidfd_send(fd: int, sig: int) -> None:
    """A signal through a pidfd (no pid reuse race); a dead process is fine."""
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        pass


# -- idmapped mounts (--userns=auto) ------------------------------------------------------------

SYS_OPEN_TREE, SYS_MOUNT_SETATTR = 428, 442
OPEN_TREE_CLONE, AT_EMPTY_PATH, MOUNT_ATTR_IDMAP = 1, 0x1000, 0x00100000
PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP = 28, 1 << 2
_libc.setfsuid.argtypes = (ctypes.c_uint,)
_libc.setfsgid.argtypes = (ctypes.c_uint,)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def open_tree_clone(path: str) -> int:
    """open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path` (not its submounts)."""
    return syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(path), OPEN_TREE_CLONE | os.O_CLOEXEC)


def idmap_mount(fd: int, userns_fd: int) -> None:
    """mount_setattr(MOUNT_ATTR_IDMAP): ids on disk read through `userns_fd`'s map on `fd`."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    ret = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_long(fd), ctypes.c_char_p(b""),
                        ctypes.c_long(AT_EMPTY_PATH), ctypes.byref(attr),
                        ctypes.c_long(ctypes.sizeof(attr)))
    if ret < 0:
        raise os_error("mount_setattr")


def set_securebits(bits: int) -> None:
    """PR_SET_SECUREBITS (e.g. keep capabilities across a change of fsuid)."""
    if _libc.prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0:
        raise os_error("cannot set securebits")


def set_fsids(uid: int, gid: int) -> None:
    """setfsgid + setfsuid: the ids file operations (and an overlay being mounted) act as."""
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)


def move_mount_to_fd(mnt: int, target_fd: int) -> None:
    """move_mount(2) a detached mount onto the file an (O_PATH) fd names."""
    syscall(SYS_MOVE_MOUNT, mnt, b"", target_fd, b"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
