"""`cp`'s two directions between a container's root (a dir fd) and the host, with docker's
rules for where a copy lands. Container paths are opened one name at a time under the root fd
(fs/rootpath.open_in_root): a symlink in the container never leads the copy (run as root)
outside it; trees are copied fd by fd (treecopy), links copied as links, never followed.

docker's rules: a dir SRC lands as DEST when DEST does not exist, inside DEST (as its own name)
when DEST is a dir, its contents only with SRC ending in `/.`; a file lands as DEST, or inside
it when DEST is a dir. Copied files belong to the caller (out) or root (in) unless `archive`.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from typing import BinaryIO

from minibuild.containers.records import ContainerError
from minibuild.containers.treecopy import copy_tree
from minibuild.fs import dirstack
from minibuild.fs.rootpath import open_in_root

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _reopen(fd: int, flags: int) -> int:
    """A real fd on what an O_PATH fd is on (through /proc, no path walked again)."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _open_container(root: int, path: str) -> int:
    """An O_PATH fd on a container path; ContainerError when it is missing."""
    try:
        return open_in_root(root, path)
    except (FileNotFoundError, NotADirectoryError):
        raise ContainerError(f"could not find the file {path} in container") from None


def _contents_only(path: str) -> bool:
    """docker's `SRC/.`: the dir's contents, not the dir."""
    return path.rstrip("/").endswith("/.") or path in (".", "./")


def copy_out(root: int, path: str, dest: str, *, archive: bool = False) -> None:
    """Copy container `path` to host `dest` (docker's landing rules)."""
    source = _open_container(root, path)
    try:
        name = os.path.basename(os.path.normpath(path)) or "root"
        into = os.path.isdir(dest) and not _contents_only(path)
        if stat.S_ISDIR(os.fstat(source).st_mode):
            _tree_out(source, os.path.join(dest, name) if into else dest, archive)
        else:
            _file_out(source, os.path.join(dest, name) if os.path.isdir(dest) else dest, archive)
    except FileExistsError as exc:
        raise ContainerError(f"{exc.filename or dest} already exists: cp does not merge into "
                             "existing entries yet") from None
    finally:
        os.close(source)


def _tree_out(source: int, target: str, archive: bool) -> None:
    """A container dir to a host dir (made when missing)."""
    if not os.path.isdir(target):
        os.mkdir(target, 0o700)
    src, dst = os.open(".", _DIR, dir_fd=source), os.open(target, _DIR)
    try:
        before = set(os.listdir(dst))
        copy_tree(src, dst)
        if not archive:
            _own(dst, before, os.geteuid(), os.getegid())
    finally:
        os.close(src)
        os.close(dst)


def _file_out(source: int, target: str, archive: bool) -> None:
    """A container file (or link, copied as a link) to a host path."""
    st = os.fstat(source)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink("", dir_fd=source), target)
        return
    if not stat.S_ISREG(st.st_mode):
        raise ContainerError("cp copies files, dirs and symlinks only")
    src = _reopen(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                      stat.S_IMODE(st.st_mode))
        try:
            _pump(src, dst)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            if archive:
                os.fchown(dst, st.st_uid, st.st_gid)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_in(root: int, source: str, path: str, *, archive: bool = False) -> None:
    """Copy host `source` to container `path` (docker's landing rules; DEST's parent must exist)."""
    st = os.lstat(source)
    parent, name, is_dir = _landing(root, path, os.path.basename(os.path.normpath(source)))
    try:
        if stat.S_ISDIR(st.st_mode):
            _tree_in(source, parent, "." if is_dir and _contents_only(source) else name, archive)
        else:
            _file_in(source, st, parent, name, archive)
    except FileExistsError as exc:
        raise ContainerError(f"{exc.filename or name} already exists in the container: cp does "
                             "not merge into existing entries yet") from None
    finally:
        os.close(parent)


def _landing(root: int, path: str, source_name: str) -> tuple[int, str, bool]:
    """The container dir (an O_PATH fd), the name a copy of `source_name` takes there, and
    whether DEST is an existing dir (the fd is then on DEST itself)."""
    try:
        found = open_in_root(root, path)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    if found is not None:
        if stat.S_ISDIR(os.fstat(found).st_mode):
            return found, source_name, True
        os.close(found)
    head, tail = os.path.split(path.rstrip("/") or "/")
    if path.endswith("/") and found is None:
        raise ContainerError(f"no such directory in container: {path}")
    return _open_container(root, head or "/"), tail, False


def _tree_in(source: str, parent: int, name: str, archive: bool) -> None:
    """A host dir into a container dir as `name` (made when missing; `.`: the dir itself)."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    src = os.open(source, _DIR)
    try:
        dst = os.open(name, _DIR, dir_fd=parent)
        try:
            before = set(os.listdir(dst))
            copy_tree(src, dst)
            if not archive:
                _own(dst, before, 0, 0)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _file_in(source: str, st: os.stat_result, parent: int, name: str, archive: bool) -> None:
    """A host file or symlink into a container dir as `name` (an existing file is replaced;
    an existing symlink there is replaced, never followed)."""
    if stat.S_ISLNK(st.st_mode):
        _unlink_quietly(parent, name)
        os.symlink(os.readlink(source), name, dir_fd=parent)
        return
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = _create_in(parent, name, stat.S_IMODE(st.st_mode))
        try:
            _pump(src, dst)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.fchown(dst, *((st.st_uid, st.st_gid) if archive else (0, 0)))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _create_in(parent: int, name: str, mode: int) -> int:
    """An fd on a fresh or truncated regular file `name` in dir fd `parent` (O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, mode, dir_fd=parent)
    except OSError:
        if not stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise
        os.unlink(name, dir_fd=parent)  # a link where the file goes: replaced, not followed
        return os.open(name, flags, mode, dir_fd=parent)


def _unlink_quietly(parent: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass


def tar_out(root: int, path: str, out: BinaryIO) -> None:
    """`cp CONTAINER:PATH -`: a tar stream of the path (links stored as links)."""
    source = _open_container(root, path)
    try:
        name = os.path.basename(os.path.normpath(path)) or "."
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if stat.S_ISDIR(os.fstat(source).st_mode):
                # `/.` crosses the fd's magic link; below it every entry is lstat'ed
                tar.add(f"/proc/self/fd/{source}/.", arcname=name)
            else:
                with os.fdopen(_reopen(source, os.O_RDONLY), "rb") as data:
                    tar.addfile(tar.gettarinfo(arcname=name, fileobj=data), data)
    finally:
        os.close(source)
    out.flush()


def untar_in(root: int, stream: BinaryIO, path: str) -> None:
    """`cp - CONTAINER:DIR`: a tar stream unpacked into a container dir. It is unpacked on the
    host first (tarfile's `data` filter), then copied in fd by fd: no member can reach
    through a symlink in the container."""
    with tempfile.TemporaryDirectory(prefix="minibuild-cp-") as staging:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            tar.extractall(staging, filter="data")
        copy_in(root, staging + "/.", path, archive=True)


def _own(dir_fd: int, before: set[str], uid: int, gid: int) -> None:
    """chown what a copy added to dir fd `dir_fd` (the entries not in `before`, and all below
    them) to uid:gid, links included, none followed; the dir itself when it was new."""
    if not before:
        os.chown(dir_fd, uid, gid)
    for name in set(os.listdir(dir_fd)) - before:
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            with dirstack.DirStack(dirstack.open_dir_at(name, dir_fd)) as stack:
                for entry in dirstack.Walk(stack):  # by fd: any depth, no link followed
                    os.chown(entry.name, uid, gid, dir_fd=entry.dir_fd, follow_symlinks=False)


def _pump(src: int, dst: int) -> None:
    """Copy all bytes from src to dst."""
    while True:
        chunk = os.read(src, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
