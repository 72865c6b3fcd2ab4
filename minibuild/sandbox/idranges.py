"""`--userns=auto` as root: a user namespace of its own for each build and container.

Each gets 65536 ids (0..65535 inside) from the subordinate range /etc/subuid and /etc/subgid
give the user `containers` (as podman's `--userns=auto`), split into slots. A slot is taken by
holding an flock on its file in the lock dir while the build or container runs, so two at once
never share ids and a crashed holder frees its slot with its last fd. The namespace itself is
made by a child that unshares CLONE_NEWUSER; we (root) write its maps and keep an fd on it.
"""

from __future__ import annotations

import fcntl
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import SandboxError
from minibuild.sandbox import linux
from minibuild.sandbox.idmapped import Mapping
from minibuild.sandbox.userns import CLONE_NEWUSER, SubRange, subordinate_range

MODES = ("host", "auto")
USERNS_ENV = "MINIBUILD_USERNS_MODE"  # the default of --userns
LOCK_DIR_ENV = "MINIBUILD_USERNS_LOCKS"  # where the slot locks live (tests point it elsewhere)
DEFAULT_LOCK_DIR = Path("/run/minibuild/userns")
RANGE_USER = "containers"
SLOT = 65536


def default_mode() -> str:
    """The --userns a command gets when not told: $MINIBUILD_USERNS_MODE, else host."""
    mode = os.environ.get(USERNS_ENV, "") or "host"
    if mode not in MODES:
        raise SandboxError(f"{USERNS_ENV}={mode!r}: must be one of {', '.join(MODES)}")
    return mode


def pool(subuid_text: str, subgid_text: str) -> SubRange:
    """The ids both files give `containers` (the overlap of its first uid and gid ranges)."""
    uids = subordinate_range(subuid_text, RANGE_USER, -1)
    gids = subordinate_range(subgid_text, RANGE_USER, -1)
    if uids is None or gids is None or uids != gids:
        raise SandboxError(
            "--userns=auto needs one subordinate range for user 'containers', the same in "
            "/etc/subuid and /etc/subgid: as root, run `echo containers:2147483647:2147483648 "
            "| tee -a /etc/subuid /etc/subgid`")
    if uids.count < SLOT:
        raise SandboxError(f"the 'containers' range in /etc/subuid has {uids.count} ids; "
                           f"--userns=auto needs at least {SLOT}")
    return uids


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


@dataclass
class IdNamespace:
    """A user namespace mapping 0..count-1 to host ids start..; `fd` keeps it alive."""

    fd: int
    start: int
    count: int
    lock_fd: int = -1

    def close(self) -> None:
        """Release the namespace fd and the slot."""
        for fd in (self.fd, self.lock_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.lock_fd = -1

    def __enter__(self) -> IdNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take_slot(lock_dir: Path, slots: int) -> tuple[int, int]:
    """(slot number, fd holding its lock) of the first free slot."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for slot in range(slots):
        fd = os.open(lock_dir / f"slot-{slot}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, fd
        except BlockingIOError:
            os.close(fd)
    raise SandboxError(f"--userns=auto: all {slots} id ranges of user 'containers' are in use")


def make_namespace(start: int, count: int) -> int:
    """An fd on a new user namespace mapping uids and gids 0..count-1 to start.. (as root)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            linux.unshare(CLONE_NEWUSER)
            os.write(ready_w, b"k")
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"k":
            raise SandboxError("--userns=auto: cannot create a user namespace")
        for kind in ("uid", "gid"):
            Path(f"/proc/{pid}/{kind}_map").write_text(f"0 {start} {count}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"--userns=auto: cannot map ids {start}-{start + count - 1}: "
                           f"{exc.strerror}") from exc
    finally:
        os.close(ready_r)
        os.close(go_w)  # the child reads EOF and leaves
        linux.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def allocate() -> IdNamespace:
    """A new user namespace on a free 65536-id slot of the 'containers' range, held till close."""
    ids = pool(_read("/etc/subuid"), _read("/etc/subgid"))
    lock_dir = Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
    slot, lock_fd = _take_slot(lock_dir, ids.count // SLOT)
    start = ids.start + slot * SLOT
    try:
        return IdNamespace(make_namespace(start, SLOT), start, SLOT, lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def for_mode(mode: str) -> IdNamespace | None:
    """The namespace a build or container of this --userns mode runs in (None: the host's)."""
    if mode not in MODES:
        raise SandboxError(f"--userns={mode}: must be one of {', '.join(MODES)}")
    if mode == "host":
        return None
    if os.geteuid() != 0 or os.environ.get("MINIBUILD_USERNS"):
        raise SandboxError("--userns=auto is for root; rootless minibuild already runs every "
                           "build and container in a user namespace")
    return allocate()


def mapping(userns: IdNamespace | None) -> Mapping | None:
    """What the forked children need of `userns` (None for the host's)."""
    return None if userns is None else Mapping(userns.fd, userns.start)
