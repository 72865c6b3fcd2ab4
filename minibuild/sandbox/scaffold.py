"""The scaffold: mount points and /etc files a step needs but that must not leak into the layer.

A scaffold is a throwaway lowerdir stacked above the image: proc/ and dev/ to mount on (with the
image's owner and mode, so a copy-up carries theirs, not ours), and etc/hosts and
etc/resolv.conf, which are also bind-mounted over the merged view so a step's edits stay out of
the upper dir. Inside the chroot, /proc is the new pid namespace's and /dev a minimal tmpfs.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from minibuild.fs import idmap
from minibuild.sandbox import linux
from minibuild.errors import SandboxError

_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
_ETC_FILES = ("hosts", "resolv.conf")


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
        # bind-mounted over the merged view too (see bind_etc_files): edits stay out of the layer
        _write(root / "etc" / "resolv.conf", resolv)
        _write(root / "etc" / "hosts", f"127.0.0.1\tlocalhost {hostname}\n"
               f"::1\tlocalhost ip6-localhost ip6-loopback\n".encode())
        _copy_meta(etc, root / "etc")
    return root


# /proc parts a step must not write or read (runc's lists): with uid 0 and no capability at all
# a writable /proc/sys would still reach host-wide settings such as kernel.core_pattern.
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
_PROC_MASKED = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/latency_stats",
                "/proc/sched_debug", "/proc/acpi", "/proc/scsi")


def _harden_proc() -> None:
    """Bind the dangerous parts of /proc read-only onto themselves, mask the secret ones."""
    for path in _PROC_READ_ONLY:
        if os.path.exists(path):
            linux.mount(path, path, "", linux.MS_BIND | linux.MS_REC, None)
            linux.mount(path, path, "", linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT
                        | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, None)
    for path in _PROC_MASKED:
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY, "size=0")
        elif os.path.exists(path):
            linux.mount("/dev/null", path, "", linux.MS_BIND, None)


def open_host_devices() -> dict[str, int] | None:
    """Rootless, before the chroot: O_PATH fds on the host's /dev/null, zero... to bind-mount
    (a user namespace cannot mknod them); None as real root, which makes its own."""
    if not idmap.in_user_namespace():
        return None
    return {name: os.open(f"/dev/{name}", os.O_PATH) for name, _, _ in _DEVICES}


def _make_devices() -> None:
    for name, major, minor in _DEVICES:
        os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)  # mknod obeys the umask


def _bind_devices(fds: dict[str, int]) -> None:
    """The host's device nodes, bound as they are (never changed) on empty files."""
    for name, fd in fds.items():
        os.close(os.open(f"/dev/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        linux.mount(f"/proc/self/fd/{fd}", f"/dev/{name}", "", linux.MS_BIND, None)
        os.close(fd)


def mount_proc_dev(host_devices: dict[str, int] | None = None,
                   pipes: Sequence[tuple[str, str]] = (), harden: bool = True,
                   shm: tuple[int, str | None] | None = None) -> None:
    """Inside the chroot: a /proc of the new pid ns and a minimal /dev (paths resolve in root);
    `host_devices` (open_host_devices) are bound instead of made when rootless; `pipes` become
    executable files in /dev/pipes/; /proc is hardened unless told otherwise (a privileged
    step); `shm` (flags, data) is the step's own /dev/shm tmpfs, instead of the default one."""
    try:
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    None)
        linux.mount("tmpfs", "/dev", "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
                    "mode=755,size=65536k")
        if host_devices is None:
            _make_devices()
        else:
            _bind_devices(host_devices)
        os.mkdir("/dev/pts", 0o755)
        linux.mount("devpts", "/dev/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620")
        os.mkdir("/dev/shm")
        os.chmod("/dev/shm", 0o1777)
        flags, data = shm or (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                              "mode=1777,size=65536k")
        linux.mount("shm", "/dev/shm", "tmpfs", flags, data)
        for name, target in _DEV_LINKS:
            os.symlink(target, f"/dev/{name}")
        _make_pipes(pipes)
        if harden:
            _harden_proc()  # after /dev: masking binds /dev/null
    except OSError as exc:
        raise SandboxError(f"cannot set up /proc and /dev in the sandbox: {exc}") from exc


def _make_pipes(pipes: Sequence[tuple[str, str]]) -> None:
    """/dev/pipes/NAME files, 0755, readable and runnable by any user of the step."""
    if not pipes:
        return
    os.mkdir("/dev/pipes", 0o755)
    for name, content in pipes:
        path = f"/dev/pipes/{name}"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(path, 0o755)  # open() obeys the umask


def open_etc_files(scaffold: str) -> dict[str, int]:
    """O_PATH fds on the scaffold's etc files, to bind-mount them once inside the chroot."""
    fds = {}
    for name in _ETC_FILES:
        try:
            fds[name] = os.open(os.path.join(scaffold, "etc", name), os.O_PATH)
        except FileNotFoundError:
            continue  # the image's /etc is a symlink: no scaffold etc
    return fds


def bind_etc_files(fds: dict[str, int]) -> None:
    """Bind our hosts/resolv.conf over the image's, so a step's edits never reach the layer.
    As docker does, a file a mount already put there (`-v ./hosts:/etc/hosts`) is left alone,
    and one missing under a mount on /etc (a volume, a tmpfs) is made in it to bind on."""
    mounted = _mount_points()
    for name, fd in fds.items():
        target = f"/etc/{name}"
        try:
            if os.path.realpath(target) in mounted:  # resolved inside the root
                continue
            if not os.path.lexists(target) and not _make_file(target):
                continue  # e.g. a read-only bind on /etc: nothing to bind on
            if stat.S_ISREG(os.stat(target).st_mode):
                linux.mount(f"/proc/self/fd/{fd}", target, "", linux.MS_BIND, None)
        except OSError as exc:
            raise SandboxError(f"cannot bind-mount {target} in the sandbox: {exc}") from exc
        finally:
            os.close(fd)


def _mount_points() -> set[str]:
    """The mount points we see (inside the chroot: relative to its root), from mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # field 5 is the mount point, with space, tab, newline and backslash as octal escapes
    return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            for line in lines if len(line.split()) > 4}


def _make_file(path: str) -> bool:
    """An empty 0644 file to bind on; False when it cannot be made (no dir, read-only)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644))
    except OSError:
        return False
    return True
