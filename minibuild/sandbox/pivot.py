"""Leaving the host's mount tree: pivot_root(2) into the step's root and detach the old one.

A chroot only changes where paths start: the step's mount namespace, a copy of the host's,
keeps every host mount alive for as long as the step runs (a loop device that cannot be
detached, a tmpfs that stays in memory after the host unmounts it). As runc does, I moves the
namespace's root to the overlay and lazily unmounts the old root, so nothing of the host's
mount tree is left in it, for the step, its children and an `exec` that enters it.

The setup that resolves paths inside the root (/proc, /dev, the bind mounts of /etc files) is
done first, under a chroot, exactly as before; then I steps back out through an fd it held on
the host root (no process of the step exists yet) and pivots from there.
"""

from __future__ import annotations

import errno
import os

from minibuild.errors import SandboxError
from minibuild.sandbox import linux


def hold_host_root() -> int:
    """An fd on the host's root, to leave the chroot by before pivoting."""
    return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def pivot_into(root: str, host_root: int) -> None:
    """Make `root` (a host path, a mount point) the namespace's root and detach the old one."""
    try:
        os.fchdir(host_root)
        os.chroot(".")
        os.chdir(root)
        if _pivot_here():
            linux.umount2(".", linux.MNT_DETACH)
        else:
            os.chroot(".")  # an initramfs host root cannot be pivoted away: chroot, as before
        os.chdir("/")
    except OSError as exc:
        raise SandboxError(f"cannot pivot the sandbox into its root: {exc}") from exc
    finally:
        os.close(host_root)


def _pivot_here() -> bool:
    """pivot_root to the cwd; False when the host's root is the initramfs (EINVAL: runc's
    --no-pivot case), whose mounts then stay in the namespace."""
    try:
        # new and old root on the same dir: the old root ends up mounted over the new one,
        # and umount2(".") takes it off (pivot_root(2), "NOTES"; runc does the same)
        linux.pivot_root(".", ".")
    except OSError as exc:
        if exc.errno == errno.EINVAL and _root_is_ramfs():
            return False
        raise
    return True


def _root_is_ramfs() -> bool:
    """Whether the host's root is the kernel's initial rootfs (ramfs or tmpfs, not a mount
    pivot_root can move)."""
    try:
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            if fields[4] == "/":
                return line.split(" - ", 1)[1].split()[0] in ("rootfs", "ramfs")
    except (OSError, IndexError):
        pass
    return False
