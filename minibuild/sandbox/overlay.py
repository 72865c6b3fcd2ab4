"""One overlayfs mount: its options, what this kernel supports, and the two ways to mount it.

The new mount API (fsopen/fsconfig, Linux >= 6.8 for `lowerdir+`) takes one layer per call and
has no size limit; mount(2) copies one page of option data, so there the lowerdirs are written
relative to their common parent, or as /proc/self/fd/N when that is still too long.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from minibuild.fs import idmap
from minibuild.sandbox import linux
from minibuild.errors import SandboxError

# Rootless, where the kernel refuses overlayfs in a user namespace (before 5.11, or disabled by
# the distribution): podman falls back to fuse-overlayfs; minibuild does not (yet).
USERNS_REFUSED = (" (this kernel refuses overlayfs in a user namespace; rootless minibuild has "
                  "no fuse-overlayfs fallback: run it as root)")
PAGE_LIMIT = 4096  # mount(2) copies at most one page of option data
OVERLAY_PARAMS = Path("/sys/module/overlay/parameters")
# (module parameter that proves the kernel knows the option, option, value)
_FEATURES = (("redirect_dir", "redirect_dir", "off"), ("metacopy", "metacopy", "off"),
             ("index", "index", "off"), ("xino_auto", "xino", "off"))
_SPECIAL = "\\,:"  # escaped in mount(2) data: the escape itself, option and layer separators


def overlay_dirs(base: Path) -> tuple[Path, Path, Path]:
    """The upper, work and merged dirs of one overlay mount kept in `base` (nothing is made)."""
    return base / "upper", base / "work", base / "merged"


def make_overlay_dirs(base: Path) -> tuple[Path, Path, Path]:
    """Make `base`'s empty upper, work and merged dirs (a step's, a view's, a container's)."""
    dirs = overlay_dirs(base)
    for d in dirs:
        d.mkdir()
    return dirs


def distinct_lowers(lowers: Sequence[str]) -> tuple[str, ...]:
    """The lowers (top first) with each dir kept only where it first appears.

    Overlay refuses one dir twice (ELOOP), and an image may hold one layer twice (two COPYs of
    identical content). Dropping the lower copies shows the same tree: whatever the lower copy
    holds, the upper copy holds too, above every layer between them.
    """
    return tuple(dict.fromkeys(lowers))


@dataclass(frozen=True)
class OverlayOptions:
    """Everything that goes into one overlay mount, whichever mount API carries it."""

    lowers: tuple[str, ...]  # top first
    upper: str
    work: str
    extra: tuple[tuple[str, str | None], ...] = ()  # None: a flag (`userxattr`)

    def fsconfig_pairs(self) -> tuple[tuple[str, str | None], ...]:
        """(key, value) for fsconfig(FSCONFIG_SET_STRING): one `lowerdir+` per layer, no limit."""
        # lowerdir+ takes the path verbatim; upperdir/workdir are still unescaped by the kernel.
        dirs = (("upperdir", _escape(self.upper, "\\")), ("workdir", _escape(self.work, "\\")))
        return (*(("lowerdir+", lower) for lower in self.lowers), *dirs, *self.extra)

    def mount_data(self, lowers: Sequence[str]) -> str:
        """mount(2) data, with `lowers` (e.g. relative forms of self.lowers) as the lowerdirs."""
        lowerdir = ":".join(_escape(p, _SPECIAL) for p in lowers)
        upper, work = _escape(self.upper, _SPECIAL), _escape(self.work, _SPECIAL)
        parts = [f"lowerdir={lowerdir}", f"upperdir={upper}", f"workdir={work}"]
        return ",".join(parts + [_option(key, value) for key, value in self.extra])

    def relative_lowers(self) -> tuple[str, tuple[str, ...]]:
        """(common parent of the lowers, each lower relative to it)."""
        base = os.path.commonpath(self.lowers)
        return base, tuple(os.path.relpath(p, base) for p in self.lowers)

    def describe(self, limit: int = 300) -> str:
        """The options for an error message, the lowerdir list shortened."""
        lowers = ":".join(self.lowers)
        if len(self.lowers) > 2:
            lowers = f"{self.lowers[0]}:...({len(self.lowers) - 2} more):{self.lowers[-1]}"
        extra = "".join(f",{_option(key, value)}" for key, value in self.extra)
        text = f"lowerdir={lowers},upperdir={self.upper},workdir={self.work}{extra}"
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _option(key: str, value: str | None) -> str:
    return key if value is None else f"{key}={value}"


def _escape(path: str, chars: str) -> str:
    """Backslash-escape `chars` the way overlayfs unescapes its option values."""
    return "".join("\\" + c if c in chars else c for c in path)


def overlay_extra_options(params: Iterable[str],
                          userxattr: bool = False) -> tuple[tuple[str, str | None], ...]:
    """The tar-safe options this kernel knows, given its overlay module parameter names; with
    `userxattr` (in a user namespace, where trusted.* xattrs are out of reach) overlay keeps its
    whiteouts, opaque dirs and copy-up state in `user.overlay.*` instead."""
    known = set(params)
    options = tuple((option, value) for param, option, value in _FEATURES if param in known)
    if not userxattr:
        return options
    # userxattr refuses redirect_dir=off (which follows old redirects when the module's
    # redirect_always_follow is set): nofollow neither makes nor follows one
    return tuple((o, "nofollow" if o == "redirect_dir" else v) for o, v in options) + (
        ("userxattr", None),)


def mount_extra() -> tuple[tuple[str, str | None], ...]:
    """The extra options of every overlay minibuild mounts here (`userxattr` when rootless)."""
    return overlay_extra_options(kernel_overlay_params(), idmap.in_user_namespace())


@functools.cache
def kernel_overlay_params() -> frozenset[str]:
    """Names under /sys/module/overlay/parameters (empty when the module exposes none)."""
    try:
        return frozenset(p.name for p in OVERLAY_PARAMS.iterdir())
    except OSError:
        return frozenset()


@functools.cache
def new_mount_api() -> bool:
    """True when fsopen works and overlay accepts `lowerdir+` (Linux >= 6.8)."""
    try:
        fd = linux.fsopen(b"overlay")
    except OSError:
        return False
    try:
        linux.fsconfig(fd, "lowerdir+", "/")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def mount_overlay(options: OverlayOptions, merged: str, new_api: bool) -> None:
    """Mount the overlay on `merged` in the current (private) mount namespace."""
    if new_api:
        _mount_overlay_new(options, merged)
    else:
        _mount_overlay_legacy(options, merged)


def _kernel_log(fd: int) -> str:
    """The messages an fs context fd collected (why fsconfig/fsmount failed)."""
    lines = []
    for _ in range(16):
        try:
            lines.append(os.read(fd, 4096).decode(errors="replace").strip())
        except OSError:
            break
    return "; ".join(line for line in lines if line)


# The image root is mounted nodev: a device node that came in a layer or an ADDed tar must not
# open the host's devices (there is no device cgroup). /dev is a tmpfs of our own on top.
ROOT_FLAGS = "nodev"


def _mount_overlay_new(options: OverlayOptions, merged: str) -> None:
    """fsopen + one fsconfig per option + fsmount + move_mount: no page limit."""
    fd = linux.fsopen(b"overlay")
    try:
        try:
            for key, value in options.fsconfig_pairs():
                linux.fsconfig(fd, key, value)
            mnt = linux.fsmount(fd, linux.MOUNT_ATTR_NODEV)  # see ROOT_FLAGS
        except OSError as exc:
            raise _mount_error(options, merged, exc, _kernel_log(fd)) from exc
        try:
            linux.move_mount(mnt, merged)
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
        linux.mount("overlay", merged, "overlay", linux.MS_NODEV, data)  # see ROOT_FLAGS
    except OSError as exc:
        raise _mount_error(options, merged, exc, "") from exc
    finally:
        for fd in fds:
            os.close(fd)


def _mount_error(options: OverlayOptions, merged: str, exc: OSError, log: str) -> SandboxError:
    """A SandboxError naming the mount point, the kernel's reason and the options."""
    why = f"{os.strerror(exc.errno)}" + (f" ({log})" if log else "")
    if exc.errno == errno.EPERM and idmap.in_user_namespace():
        why += USERNS_REFUSED
    return SandboxError(f"cannot mount overlay on {merged}: {why}; options: {options.describe()}")
