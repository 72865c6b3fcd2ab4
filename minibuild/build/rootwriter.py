"""Writing into an image root for COPY/ADD: dirs made as Docker makes them, files, symlinks,
owners, modes and times, every image path resolved inside the root as a chroot would.

Files reused from an earlier layer (reuse.py) are hard links the writer must never open, chmod,
chown, utime or replace: `Reused` lists them, and a write that would touch one raises
`ReuseMismatch` (the step is then redone without reuse).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from minibuild.build.copymeter import CopyMeter
from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.dockerfile.filemode import FileMode
from minibuild.errors import BuildError
from minibuild.fs import idmap
from minibuild.fs.longpath import LongPaths
from minibuild.fs.rootpath import resolve_in_root


ROOT_OWNER = (0, 0)
_CHUNK = 1 << 20


class ReuseMismatch(BuildError):
    """The copy would not leave a reused file exactly as linked: redo the step without reuse."""


@dataclass(frozen=True)
class Reused:
    """Files put in the upper dir before the copy (hard links to an earlier layer's identical
    files): the copy must leave them alone, never open, chmod, chown, utime or replace them.

    files: image path -> context path (source_key) of the one source entry that lands there.
    attrs: image path -> (mode bits, uid, gid, mtime_ns, size) of the linked file; the copy
    checks them against what it would write (no stat through the mount needed).
    premade: image paths of the dirs made for them that the image below does not have; the
    copy treats them as created by itself (mode, owner, the dest dir's own mode and mtime).
    """

    files: Mapping[str, str]
    attrs: Mapping[str, tuple[int, int, int, int, int]]
    premade: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Attrs:
    """What a written entry ends up with."""

    mode: int
    owner: tuple[int, int]
    mtime_ns: int


@dataclass(frozen=True)
class Job:
    """One apply_copy call, resolved: where to read, where to write, as whom."""

    root: str
    context: str
    owner: tuple[int, int]
    chmod: FileMode | None
    ignore: IgnoreRules | None
    unpack: bool
    verb: str
    chown_given: bool
    reuse: Reused | None = None
    exclude: IgnoreRules | None = None  # --exclude, matched below the destination
    keep_owner: bool = False  # COPY --from without --chown: entries keep the stage's uid/gid
    meter: CopyMeter | None = None  # counts the bytes written (TTY progress)
    claimed: set[str] = field(default_factory=set)  # reused image paths the walk reached
    finished: set[str] = field(default_factory=set)  # premade dirs already treated as created
    # Paths past PATH_MAX (a context dir 10,000 deep) as (dir fd, rest), one pin set per tree.
    src: LongPaths = field(default_factory=LongPaths)
    dst: LongPaths = field(default_factory=LongPaths)

    def attrs(self, st: os.stat_result) -> Attrs:
        """Attributes for an entry copied from the context."""
        owner = (st.st_uid, st.st_gid) if self.keep_owner and not self.chown_given else self.owner
        return Attrs(self.mode_of(st.st_mode), owner, st.st_mtime_ns)

    def mode_of(self, st_mode: int) -> int:
        """The permission bits an entry with this st_mode gets (--chmod applied to its own)."""
        if self.chmod is None:
            return stat.S_IMODE(st_mode)
        return self.chmod.apply(stat.S_IMODE(st_mode), stat.S_ISDIR(st_mode))

    @property
    def dir_mode(self) -> int:
        """The mode of dirs the copy creates on its way to the destination (BuildKit's rule:
        an octal --chmod, else 0755)."""
        return 0o755 if self.chmod is None else self.chmod.dir_mode


def image_path(root: str, host: str) -> str:
    """The image path of a host path under root."""
    rel = os.path.relpath(host, root)
    return "/" if rel == "." else "/" + rel


def within(host: str, scope: str) -> bool:
    """True when host is scope or below it."""
    return host == scope or host.startswith(scope.rstrip("/") + "/")


def claim_reused(job: Job, target: str, key: str, attrs: Attrs, size: int) -> bool:
    """True when target is a reused file for exactly this source entry, already as the copy
    would write it; then nothing is written there."""
    if job.reuse is None:
        return False
    image = target if job.root == "/" else image_path(job.root, target)
    expected = job.reuse.files.get(image)
    if expected is None:
        return False
    if expected != key or image in job.claimed:
        raise ReuseMismatch(f"{job.verb}: {image} is reused for {expected}, but {key} lands there")
    if job.reuse.attrs.get(image) != (attrs.mode, *attrs.owner, attrs.mtime_ns, size):
        raise ReuseMismatch(f"{job.verb}: the reused {image} differs from what the copy writes")
    job.claimed.add(image)
    return True


def _guard(job: Job, target: str) -> None:
    """Refuse to replace a reused file: its inode belongs to an earlier layer too."""
    if job.reuse is not None:
        image = target if job.root == "/" else image_path(job.root, target)
        if image in job.reuse.files:
            raise ReuseMismatch(f"{job.verb}: the copy would replace the reused file {image}")


def _premade(job: Job, host: str) -> bool:
    """True (once per dir) when a dir exists only because reuse made it before the copy: the
    first time the copy would have created it, it treats it as just created."""
    if job.reuse is None or not job.reuse.premade:
        return False
    image = host if job.root == "/" else image_path(job.root, host)
    if image not in job.reuse.premade or image in job.finished:
        return False
    job.finished.add(image)
    return True


def chown(target: str | int, owner: tuple[int, int], dir_fd: int | None = None) -> None:
    """Set ownership of a path (not following links, relative to dir_fd) or of an open fd."""
    try:
        if isinstance(target, int):
            os.fchown(target, *owner)
        else:
            os.chown(target, *owner, dir_fd=dir_fd, follow_symlinks=False)
    except PermissionError:
        # Only root can give files away. Unprivileged runs (unit tests) keep their own ids
        # for the default 0:0, but an explicit other owner that cannot be set is an error.
        if os.geteuid() == 0 or owner != ROOT_OWNER:
            raise BuildError(f"cannot chown {target} to {owner[0]}:{owner[1]}: permission denied")
    except OSError as exc:
        if exc.errno != errno.EINVAL or not idmap.in_user_namespace():
            raise
        raise BuildError(f"cannot chown {target} to {owner[0]}:{owner[1]}: rootless minibuild "
                         f"maps only uids {idmap.describe_map('uid')} and gids "
                         f"{idmap.describe_map('gid')} (the user's range in /etc/subuid and "
                         "/etc/subgid)") from None


def mkdirs(job: Job, host: str, owner: tuple[int, int], mode: int = 0o755) -> bool:
    """Create missing dirs down to a resolved host path, each with `owner` and `mode` (BuildKit
    gives every dir a COPY creates the --chown owner and an octal --chmod, fsutil's MkdirAll).
    Return whether the last one was created."""
    rel = os.path.relpath(host, job.root)
    parts = [] if rel == "." else rel.split("/")
    cur, created = job.root, False
    for part in parts:
        cur = os.path.join(cur, part)
        if os.path.isdir(cur) and not os.path.islink(cur):
            created = _premade(job, cur)
            if created:  # made before the mount for reused files: finish it as a new dir
                chown(cur, owner)
                os.chmod(cur, mode)
            continue
        if os.path.lexists(cur):
            _guard(job, cur)
            raise BuildError(f"{job.verb} failed: cannot create directory "
                             f"{image_path(job.root, host)}: {image_path(job.root, cur)} "
                             "exists and is not a directory")
        os.mkdir(cur, 0o700)
        chown(cur, owner)
        os.chmod(cur, mode)  # after chown (it clears set-id bits); mkdir's mode has the umask
        created = True
    return created


def ensure_dir(job: Job, path: str) -> tuple[str, bool]:
    """The host path of an image dir, created (as the copy creates dirs) if missing; and whether
    it was created."""
    host = resolve_in_root(job.root, path)
    return host, mkdirs(job, host, job.owner, job.dir_mode)


def file_target(job: Job, dest: str, want_dir: bool, name: str) -> str:
    """Where a single file goes: inside dest when it is (or must be) a dir, else dest."""
    host = resolve_in_root(job.root, dest)
    if want_dir or os.path.isdir(host):
        dir_host, _ = ensure_dir(job, dest)
        return os.path.join(dir_host, name)
    mkdirs(job, os.path.dirname(host), job.owner, job.dir_mode)
    return host


def clear(job: Job, target: str) -> None:
    """Make room for a non-directory at target (replacing a file or link is Docker's way)."""
    fd, rest = job.dst.split(target)
    try:
        st = os.lstat(rest, dir_fd=fd)
    except FileNotFoundError:
        return
    _guard(job, target)
    if stat.S_ISDIR(st.st_mode):
        raise BuildError(f"{job.verb} failed: cannot overwrite directory "
                         f"{image_path(job.root, target)} with a non-directory")
    os.unlink(rest, dir_fd=fd)


def put_dir(job: Job, target: str, attrs: Attrs, scope: str) -> tuple[str, bool]:
    """Make target a dir with attrs; an existing link to a dir (inside scope) is followed.

    Returns the host dir to write children into and whether its mtime is ours to set.
    """
    fd, rest = job.dst.split(target)
    try:
        st = os.lstat(rest, dir_fd=fd)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        # e.g. /lib -> usr/lib in merged-/usr images: write through, as a chroot would.
        resolved = resolve_in_root(job.root, image_path(job.root, target))
        if os.path.isdir(resolved) and within(resolved, scope):
            return resolved, False
    if st is None or not stat.S_ISDIR(st.st_mode):
        clear(job, target)
        fd, rest = job.dst.split(target)
        os.mkdir(rest, 0o700, dir_fd=fd)
    chown(rest, attrs.owner, fd)
    os.chmod(rest, attrs.mode, dir_fd=fd)  # after chown: chown clears set-id bits
    return target, True


def put_file(job: Job, target: str, src: BinaryIO, attrs: Attrs) -> None:
    """Write a regular file from a stream, replacing what was there."""
    clear(job, target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd, rest = job.dst.split(target)
    fd = os.open(rest, flags, 0o600, dir_fd=dir_fd)
    try:
        _pump(src, fd, job.meter.add if job.meter is not None else None)
        chown(fd, attrs.owner)
        os.fchmod(fd, attrs.mode)  # after chown: chown clears set-id bits
    finally:
        os.close(fd)
    os.utime(rest, ns=(attrs.mtime_ns, attrs.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def _pump(src: BinaryIO, fd: int, count: Callable[[int], None] | None = None) -> None:
    """Copy a stream into fd: in-kernel sendfile for real files, 1 MiB chunks otherwise;
    `count` is told each chunk's size (sendfile's are 16 MiB: progress moves on a big file)."""
    count = count or (lambda _: None)
    try:
        infd = src.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        infd = None
    if infd is not None:
        try:
            while (sent := os.sendfile(fd, infd, None, 1 << 24)) > 0:
                count(sent)
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP):
                raise
    with open(fd, "wb", closefd=False) as out:  # buffered: each write is written whole
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            count(len(chunk))


def put_symlink(job: Job, target: str, link: str, attrs: Attrs) -> None:
    """Create a symlink (kept as data, never followed), replacing what was there."""
    clear(job, target)
    fd, rest = job.dst.split(target)
    os.symlink(link, rest, dir_fd=fd)
    chown(rest, attrs.owner, fd)
    os.utime(rest, ns=(attrs.mtime_ns, attrs.mtime_ns), dir_fd=fd, follow_symlinks=False)


def set_dir_times(stamps: list[tuple[str, int]], paths: LongPaths | None = None) -> None:
    """Set dir mtimes deepest first, after their children stopped changing them."""
    with LongPaths() as own:
        for host, ns in reversed(stamps):
            fd, rest = (paths or own).split(host)
            os.utime(rest, ns=(ns, ns), dir_fd=fd, follow_symlinks=False)
