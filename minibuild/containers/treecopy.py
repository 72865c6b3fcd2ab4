"""A tree copied with everything it carries (owners, modes, times, xattrs, symlinks), for
seeding a volume from the image: every step is relative to an open dir fd, no path is walked
and no symlink followed, so a link in the source or a concurrent writer of the destination
can never lead the copy (run as root) anywhere else."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from minibuild.fs import dirstack
from minibuild.layer import whiteout

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str) -> int | None:
    """An fd on a directory whose last component is not a symlink; None when it is no dir."""
    try:
        return os.open(path, _DIR)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise


def clear_dir(fd: int) -> None:
    """Delete everything in dir fd `fd` (links removed, never followed)."""
    dirstack.clear_at(fd)


def copy_tree(source: int, target: int) -> None:
    """Copy the contents of dir fd `source` into dir fd `target` (expected empty), then give
    `target` the source dir's owner, mode and times. Sockets are skipped; hard links become
    separate copies. Iterative, by fds only (dirstack): any depth."""
    old = os.umask(0)  # modes exactly as the image has them
    try:
        with dirstack.DirStack(os.dup(source)) as src, dirstack.DirStack(os.dup(target)) as dst:
            for entry in dirstack.Walk(src, after=True):
                _copy_entry(entry, src, dst)
        _finish(source, target, os.fstat(source))
    finally:
        os.umask(old)


def _copy_entry(entry: dirstack.Entry, src: dirstack.DirStack, dst: dirstack.DirStack) -> None:
    """One step of copy_tree: `dst` follows `src` down (a dir is made and entered as the walk
    enters it) and back up (a dir is finished once its children are done)."""
    want = src.depth + (1 if entry.after else 0)
    while dst.depth > want:  # a dir made but not entered by the walk (it vanished meanwhile)
        dst.pop()
    if entry.after:
        _finish_dir(entry, dst.fd)
        dst.pop()
        return
    name, source, target, st = entry.name, entry.dir_fd, dst.fd, entry.st
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=target)
        dst.push(name)
    elif stat.S_ISREG(st.st_mode):
        _copy_file(name, source, target, st)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=target, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=target, follow_symlinks=False)
    elif not stat.S_ISSOCK(st.st_mode):  # fifo or device node: made with its final mode
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=target)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=target, follow_symlinks=False)


def _finish_dir(entry: dirstack.Entry, target: int) -> None:
    """Give the copy of the dir `entry` (dir fd `target`) its owner, mode, xattrs and times."""
    try:
        source = dirstack.open_dir_at(entry.name, entry.dir_fd)
    except OSError as exc:
        if exc.errno not in dirstack.GONE:
            raise
        source = None  # gone or swapped since: what the walk saw of it, without xattrs
    try:
        _finish(source, target, entry.st)
    finally:
        if source is not None:
            os.close(source)


def _copy_file(name: str, source: int, target: int, st: os.stat_result) -> None:
    with _opened(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, source) as src, \
            _opened(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, target,
                    0o600) as dst:
        _copy_bytes(src, dst)
        _finish(src, dst, st)


@contextmanager
def _opened(name: str, flags: int, dir_fd: int, mode: int = 0o777) -> Iterator[int]:
    """An fd opened relative to a dir fd, closed when the block ends."""
    fd = os.open(name, flags, mode, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _copy_bytes(src: int, dst: int) -> None:
    """copy_file_range where the kernel can (overlay to ext4 mostly can), else read/write."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while True:
        chunk = os.read(src, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _finish(src: int | None, dst: int, st: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-id bits), xattrs (from `src` when given) and times,
    through fds."""
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    if src is not None:
        _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_xattrs(src: int, dst: int) -> None:
    """Every xattr but overlay's own; a filesystem without xattrs is fine."""
    try:
        names = os.listxattr(src)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        if whiteout.is_overlay_xattr(name):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise
