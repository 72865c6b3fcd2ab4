"""The mounts of one RUN inside its sandbox: what goes where (decided in the parent), the mount
points the image lacks (made in the scaffold), and the mounting itself (in the child C).

A missing mount point is made in the scaffold, the throwaway lowerdir above the image, never
through the overlay: the step's upper dir (its layer) never holds an empty `/root/.cache` or
`/run/secrets` made only to mount on, and a RUN that writes only into its mounts adds no layer.
Everything is mounted in C's private mount namespace after the root overlay and before I
chroots, so the kernel drops it all with C, even on SIGKILL. Targets are resolved inside the
image as a chroot would, one component at a time from an fd on the root (fs/rootpath's
open_in_root: each name opened with O_NOFOLLOW from its parent's fd), and mounted on through
the final O_PATH fd, so neither a symlink in the image nor one swapped in meanwhile (a
container sharing a volume, the owner of a bind's host dir) leads a mount, or a mount point we
make, out of the root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from minibuild.errors import BuildError, SandboxError
from minibuild.fs.rootpath import ImagePath, open_in_root, resolve_in_root
from minibuild.sandbox import linux
from minibuild.sandbox.overlay import OverlayOptions, mount_overlay

_BIND_FLAGS = linux.MS_NOSUID | linux.MS_NODEV


@dataclass(frozen=True)
class Bind:
    """Bind a host dir or file (a cache dir, or a path inside an overlay `view`) on a target."""

    target: str  # absolute, inside the image
    source: str  # a host path; with `view`, a path inside the view (resolved as in a chroot)
    readonly: bool
    file: bool  # the source is a file, so the mount point is one
    view: OverlayOptions | None = None  # mounted on `view_at` first (the context, a stage)
    view_at: str | None = None
    name: str = ""  # what it is, for messages
    host: bool = False  # a host path the user named (-v /dir): never idmapped (--userns=auto)

    @property
    def flags(self) -> int:
        """The bind's final flags (set by a remount once every mount is made)."""
        return _BIND_FLAGS | (linux.MS_RDONLY if self.readonly else 0)


@dataclass(frozen=True)
class Tmpfs:
    """A fresh tmpfs on a target."""

    target: str
    size: int | None = None
    file: bool = False
    mode: int | None = None  # its root's mode (tmpfs's default: 1777)
    readonly: bool = False
    noexec: bool = False

    @property
    def flags(self) -> int:
        """The tmpfs's mount flags."""
        return (_BIND_FLAGS | (linux.MS_RDONLY if self.readonly else 0)
                | (linux.MS_NOEXEC if self.noexec else 0))

    @property
    def data(self) -> str | None:
        """The tmpfs's mount options (size, mode), or None."""
        options = [f"size={self.size}"] if self.size is not None else []
        options += [f"mode={self.mode:o}"] if self.mode is not None else []
        return ",".join(options) or None


@dataclass(frozen=True)
class SecretFile:
    """A secret as a read-only file: written to a tmpfs mounted on `staging` (a host dir,
    never on disk), then bound on the target."""

    target: str
    id: str
    value: bytes = field(repr=False)
    staging: str = ""
    mode: int = 0o400
    uid: int = 0
    gid: int = 0
    file: bool = True

    @property
    def flags(self) -> int:
        """The bind's final flags."""
        return _BIND_FLAGS | linux.MS_RDONLY | linux.MS_NOEXEC


StepMount = Union[Bind, Tmpfs, SecretFile]
# How to find a path in an image from its layer dirs (top first), by overlay's rules: the
# caller's (layer/layerpath.resolve), as whiteouts and opaque dirs are a layer format.
ImageLookup = Callable[[Sequence[Path], str], ImagePath]


SHM = "/dev/shm"


def shm_tmpfs(mounts: Sequence[StepMount]) -> tuple[int, str | None] | None:
    """(flags, data) of a step's tmpfs on /dev/shm: I mounts it instead of the sandbox's own
    when it sets up /dev (after the chroot), so mount_all and make_stubs leave it out."""
    for mount in mounts:
        if _on_shm(mount):
            return mount.flags, mount.data
    return None


def _on_shm(mount: StepMount) -> bool:
    return isinstance(mount, Tmpfs) and mount.target == SHM


def _depth(mount: StepMount) -> int:
    return mount.target.count("/")


def _nested(mount: StepMount, mounts: Sequence[StepMount]) -> bool:
    """True when the target lies inside another mount's target (its mount point is made in
    that mount, by the child)."""
    return any(mount.target.startswith(other.target + "/") for other in mounts)


# -- in the parent: mount points in the scaffold ------------------------------------------------


def make_stubs(scaffold: Path, lookup: Callable[[str], ImagePath],
               mounts: Sequence[StepMount]) -> None:
    """Make in the scaffold every mount point the image lacks (`lookup` finds a path in the
    image); a target the image holds as the wrong kind (a file for a dir mount or the reverse)
    is a BuildError."""
    touched: dict[Path, os.stat_result] = {}
    for mount in sorted(mounts, key=_depth):
        if _nested(mount, mounts) or _on_shm(mount):
            continue
        found = lookup(mount.target)
        if found.exists:
            _check_kind(mount, found.is_dir())
            continue
        path = scaffold
        for index, part in enumerate(found.parts):
            path = path / part
            if index < len(found.found):  # a dir of the image: show it with its attributes
                path.mkdir(exist_ok=True)
                touched.setdefault(path, found.found[index])
            elif index == len(found.parts) - 1 and mount.file:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            else:
                path.mkdir(0o755, exist_ok=True)
                os.chmod(path, 0o755)  # mkdir obeys the umask
    # deepest first: making a child moved its parent's mtime
    for path, st in sorted(touched.items(), key=lambda item: -len(item[0].parts)):
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _check_kind(mount: StepMount, is_dir: bool) -> None:
    """Refuse a file mount on a dir of the image, or a dir mount on a file."""
    if mount.file and is_dir:
        raise BuildError(f"cannot mount a file on {mount.target}: it is a directory in the image")
    if not mount.file and not is_dir:
        raise BuildError(f"cannot mount a directory on {mount.target}: it is a file in the image")


# -- in the child C: the mounts themselves ------------------------------------------------------


def mount_all(mounts: Sequence[StepMount], merged: str, new_api: bool,
              userns_fd: int | None = None) -> None:
    """Mount everything on the root mounted at `merged`, outer targets first; binds are made
    read-write, then remounted with their final flags once the nested mount points exist.
    Every target is walked from an fd on the root (never by path), so a component another
    process swaps for a symlink meanwhile (a container sharing a volume, the owner of a bind's
    host dir) can neither make us create a mount point outside the root nor move a mount or
    its read-only remount elsewhere. With `userns_fd` (--userns=auto) every bind but a host
    path's is idmapped through it, so the step's root owns what host root owns there."""
    root = os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        staged: set[str] = set()
        made: list[tuple[StepMount, tuple[int, int]]] = []  # binds, and their source's inode
        for mount in sorted((m for m in mounts if not _on_shm(m)), key=_depth):
            try:
                point = open_in_root(root, mount.target, make=True, file=mount.file)
                try:
                    if isinstance(mount, Tmpfs):
                        _mount_on(point, "tmpfs", "tmpfs", mount.flags, mount.data)
                    elif isinstance(mount, Bind):
                        # overlayfs (a view) cannot be idmapped: its files show unmapped ids as 65534
                        idmap = None if mount.host or mount.view else userns_fd
                        made.append((mount, _bind(_bind_source(mount, new_api), point, mount,
                                                  idmap)))
                    else:
                        made.append((mount, _bind(_stage_secret(mount, staged), point, mount,
                                                  userns_fd)))
                finally:
                    os.close(point)
            except OSError as exc:
                raise SandboxError(f"cannot mount {_name(mount)} on {mount.target}: "
                                   f"{exc.strerror}") from exc
        for mount, source in made:
            _remount(root, mount, source)
    finally:
        os.close(root)


def _remount(root: int, mount: StepMount, source: tuple[int, int]) -> None:
    """Give a bind its final flags, on the mount found at its target again only if it is
    still the one we made there (the source's dev and inode)."""
    try:
        point = open_in_root(root, mount.target)
        try:
            st = os.fstat(point)
            if (st.st_dev, st.st_ino) != source:
                raise SandboxError(f"cannot make the mount on {mount.target} read-only: "
                                   "its target was moved meanwhile")
            _mount_on(point, "none", "", linux.MS_BIND | linux.MS_REMOUNT | mount.flags, None)
        finally:
            os.close(point)
    except OSError as exc:
        raise SandboxError(f"cannot make the mount on {mount.target} read-only: "
                           f"{exc.strerror}") from exc


def _name(mount: StepMount) -> str:
    if isinstance(mount, Tmpfs):
        return "a tmpfs"
    if isinstance(mount, SecretFile):
        return f"secret {mount.id}"
    return mount.name or mount.source


def _mount_on(point: int, source: str, fstype: str, flags: int, data: str | None) -> None:
    """mount(2) on exactly the O_PATH fd `point` (through /proc/self/fd: no path walked)."""
    linux.mount(source, f"/proc/self/fd/{point}", fstype, flags, data)


def _bind_source(mount: Bind, new_api: bool) -> str:
    """The host path to bind: the cache dir, or the source inside its freshly mounted view."""
    if mount.view is None:
        return mount.source
    assert mount.view_at is not None
    mount_overlay(mount.view, mount.view_at, new_api)
    return resolve_in_root(mount.view_at, mount.source)


def _stage_secret(mount: SecretFile, staged: set[str]) -> str:
    """Write the secret into the staging tmpfs (mounted on first use); its host path."""
    if mount.staging not in staged:  # each secret has a staging dir of its own: room for it
        linux.mount("tmpfs", mount.staging, "tmpfs", _BIND_FLAGS | linux.MS_NOEXEC,
                    f"mode=0700,size={len(mount.value) + 65536}")
        staged.add(mount.staging)
    path = os.path.join(mount.staging, str(len(os.listdir(mount.staging))))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(mount.value)
        while view:
            view = view[os.write(fd, view):]
        os.fchown(fd, mount.uid, mount.gid)
        os.fchmod(fd, mount.mode)
    finally:
        os.close(fd)
    return path


def _bind(source: str, point: int, mount: StepMount, userns_fd: int | None) -> tuple[int, int]:
    """Bind `source` (its last component not followed) on the O_PATH fd `point`, idmapped
    through `userns_fd` if given; the kinds must match. The source's (dev, inode): the bind's
    root, found again to remount it."""
    fd = os.open(source, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):  # resolved sources are never links: one appeared meanwhile
            raise BuildError(f"cannot mount {_name(mount)}: it is a symbolic link")
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir != stat.S_ISDIR(os.fstat(point).st_mode):
            what = "directory" if is_dir else "file"
            raise BuildError(f"cannot mount {_name(mount)} ({'a ' + what}) on {mount.target}: "
                             f"the target is {'not ' if is_dir else ''}a directory")
        if userns_fd is None:
            _mount_on(point, f"/proc/self/fd/{fd}", "", linux.MS_BIND, None)
        else:
            _idmapped_bind(fd, point, userns_fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def _idmapped_bind(fd: int, point: int, userns_fd: int) -> None:
    """A clone of the mount at the O_PATH fd `fd`, idmapped, moved onto the O_PATH fd `point`."""
    tree = linux.open_tree_clone(f"/proc/self/fd/{fd}")
    try:
        try:
            linux.idmap_mount(tree, userns_fd)
        except OSError as exc:  # inside the step's idmapped dir already (/etc/hostname): a
            if exc.errno != errno.EPERM:  # clone keeps that mapping, which is the same one
                raise
        linux.move_mount_to_fd(tree, point)
    finally:
        os.close(tree)
