"""The child's side of `--userns=auto`: idmapped layers under the overlay, and the step's entry
into its user namespace.

The store keeps in-image ids on disk (uid 0 is 0, www-data is 33), shared with --userns=host
builds. In C's private mount namespace each lower dir, and the dir holding upper and work, is
replaced by an idmapped clone of itself (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)) that
shows on-disk id N as host id start+N. The overlay over them is mounted with fsuid/fsgid =
start, the namespace's root: overlay does its own work (work dir, copy-up) with the mounter's
ids, which must be mapped by the idmapped upper (EOVERFLOW otherwise). The step's init (pid 1),
once /proc and /dev are mounted, setns(2)es into the user namespace as its uid 0, i.e. host uid
`start`, and forks the command there (`exec` joins the init's): root inside, nobody outside.
The mount, pid, uts, ipc and network namespaces stay owned by the host's user namespace, so
the step's root cannot mount or configure the network either.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from minibuild.errors import SandboxError
from minibuild.sandbox import linux
from minibuild.sandbox.overlay import OverlayOptions


@dataclass(frozen=True)
class Mapping:
    """What a forked child needs of an IdNamespace: the fd and the host id of its root."""

    fd: int
    start: int


def mapped_dirs(options: OverlayOptions) -> tuple[str, ...]:
    """The dirs to idmap: the common parent of upper and work, then every lower not under it."""
    base = os.path.commonpath((options.upper, options.work))
    inside = base.rstrip("/") + "/"
    return (base, *(p for p in options.lowers if p != base and not p.startswith(inside)))


def idmap_dirs(dirs: tuple[str, ...], userns_fd: int) -> None:
    """Cover each dir with an idmapped clone of itself (in a private mount namespace)."""
    for path in dirs:
        try:
            fd = linux.open_tree_clone(path)
            try:
                linux.idmap_mount(fd, userns_fd)
                linux.move_mount(fd, path)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SandboxError(f"--userns=auto: cannot make an idmapped mount of {path}: "
                               f"{exc.strerror} (idmapped mounts need Linux 5.12+, and this "
                               "file system must support them)") from exc


@contextlib.contextmanager
def acting_as(start: int) -> Iterator[None]:
    """File operations (and the overlay mounted meanwhile) act as host id `start`, capabilities
    kept (SECBIT_NO_SETUID_FIXUP), then as root again."""
    linux.set_securebits(linux.SECBIT_NO_SETUID_FIXUP)
    linux.set_fsids(start, start)
    try:
        yield
    finally:
        linux.set_fsids(0, 0)
        linux.set_securebits(0)


def enter(mapping: Mapping) -> None:
    """setns into the user namespace and become its root (host uid `start`), no groups."""
    try:
        linux.setns(mapping.fd)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        raise SandboxError(f"--userns=auto: cannot enter the user namespace: "
                           f"{exc.strerror}") from exc
    os.close(mapping.fd)


def open_privileged_ports() -> None:
    """In the step's own network namespace, let its root (not host root) bind ports < 1024."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
            f.write("0")
    except OSError:
        pass  # an old kernel: only ports from 1024 up
