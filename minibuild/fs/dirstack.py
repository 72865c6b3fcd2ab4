"""Trees walked by directory fds, never by path: any depth (a 10,000-deep dir is far past
PATH_MAX and Python's recursion limit), and no symlink ever followed, even one swapped in while
the walk runs (a running container may rename under it).

A `DirStack` holds the dirs from a root down to where the walk stands, each opened relative to
its parent with O_NOFOLLOW|O_DIRECTORY. Only the deepest MAX_OPEN stay open; going back up past
a closed one reopens it as `..` of its child and checks it is the same inode, so a dir moved
meanwhile is noticed (`Moved`) rather than walked. `walk` is the one iterative walk on top.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN = 64  # dir fds a stack keeps open; deeper ancestors are reopened through `..`
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # what a name vanishing or changing kind gives


class Moved(OSError):
    """A directory of the walk was moved or replaced while the walk was below it."""


def open_dir_at(name: str | bytes, dir_fd: int | None = None) -> int:
    """An fd on the directory `name` (relative to `dir_fd`), its last component never a link."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def at(dir_fd: int, name: str | bytes) -> str | bytes:
    """A short path naming `name` in the dir held by `dir_fd`, for the calls that take no dir_fd
    (listxattr, getxattr): the fd link pins the dir, so nothing above it is walked."""
    if isinstance(name, bytes):
        return b"/proc/self/fd/%d/%s" % (dir_fd, name)
    return f"/proc/self/fd/{dir_fd}/{name}"


SHORT = 3800  # bytes of a path handed to the kernel at once (PATH_MAX is 4096)


@contextmanager
def shortened(path: str | bytes) -> Iterator[str | bytes]:
    """`path` itself, or for one past PATH_MAX a short name for the same entry: an O_PATH fd
    on a dir near its end (opened a chunk at a time) and the rest through /proc/self/fd. For
    trees no one changes meanwhile (layer dirs): the chunks are walked by the kernel. The
    name is valid inside the block only."""
    raw = os.fsencode(path)
    if len(raw) < SHORT:
        yield path
        return
    fd = None
    try:
        while len(raw) >= SHORT:
            cut = raw.rfind(b"/", 1, SHORT)
            head, raw = raw[:cut], raw[cut + 1:]
            inner = os.open(head, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            if fd is not None:
                os.close(fd)
            fd = inner
        short = at(fd, raw)
        yield short if isinstance(path, bytes) else os.fsdecode(short)
    finally:
        if fd is not None:
            os.close(fd)


def proc_available() -> bool:
    """True when /proc/self/fd works (it does in every sandbox minibuild itself sets up)."""
    return os.path.isdir("/proc/self/fd")


class _Frame:
    __slots__ = ("name", "fd", "dev", "ino")

    def __init__(self, name: str | bytes, fd: int, st: os.stat_result) -> None:
        self.name, self.fd, self.dev, self.ino = name, fd, st.st_dev, st.st_ino


class DirStack:
    """The dirs from a root down to the current one, held by fd (see the module doc)."""

    def __init__(self, root_fd: int) -> None:
        """Take ownership of `root_fd` (closed by close())."""
        self.frames = [_Frame("", root_fd, os.fstat(root_fd))]

    @classmethod
    def open(cls, path: str | bytes | os.PathLike) -> DirStack:
        """A stack on the directory at `path` (its last component must not be a link)."""
        return cls(open_dir_at(os.fspath(path)))

    def __enter__(self) -> DirStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fd(self) -> int:
        """An fd on the current (deepest) dir."""
        return self.frames[-1].fd

    @property
    def depth(self) -> int:
        """How many dirs below the root the stack stands."""
        return len(self.frames) - 1

    def push(self, name: str | bytes) -> os.stat_result:
        """Enter the subdir `name` of the current dir; its fstat. OSError (ENOTDIR, ELOOP,
        ENOENT) when it is no longer a real dir."""
        fd = open_dir_at(name, self.fd)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.frames.append(_Frame(name, fd, st))
        if len(self.frames) > MAX_OPEN:
            far = self.frames[-MAX_OPEN - 1]
            if far.fd >= 0:
                os.close(far.fd)
                far.fd = -1
        return st

    def pop(self) -> None:
        """Go back up to the parent (reopened through `..` if it was let go)."""
        top = self.frames[-1]
        parent = self.frames[-2]
        try:
            if parent.fd < 0:
                fd = open_dir_at("..", top.fd)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (parent.dev, parent.ino):
                    os.close(fd)
                    raise Moved(errno.ESTALE, "directory moved during the walk", top.name)
                parent.fd = fd
        finally:
            self.frames.pop()
            os.close(top.fd)

    def close(self) -> None:
        """Close every fd held."""
        while self.frames:
            fd = self.frames.pop().fd
            if fd >= 0:
                os.close(fd)


@dataclass
class Entry:
    """One entry met by `walk`: its name in the dir `dir_fd` (valid until the walk moves on),
    its path below the root (`a/b`), its lstat, and `after` on the second visit of a dir (after
    its children; then dir_fd is its parent again)."""

    dir_fd: int
    name: str
    rel: str
    st: os.stat_result
    after: bool = False

    @property
    def is_dir(self) -> bool:
        """True for a directory (never for a link to one)."""
        return stat.S_ISDIR(self.st.st_mode)


class Walk:
    """Every entry below a DirStack's current dir, parents first, names sorted, by fd only.

    Dirs are entered unless `prune()` is called right after one is yielded; with `after=True`
    each dir is yielded again once its children are done. An entry that vanishes or changes
    kind between listing and use is skipped (and counted in `skipped`): a running container
    changes its tree under the walk, and no walk may fail or wander for that.
    """

    def __init__(self, stack: DirStack, *, after: bool = False) -> None:
        self.stack = stack
        self.after = after
        self.skipped = 0
        self._pruned = False

    def prune(self) -> None:
        """Do not enter the dir just yielded."""
        self._pruned = True

    def __iter__(self) -> Iterator[Entry]:
        stack = self.stack
        base = stack.depth
        pending: list[list[str]] = [self._names(stack.fd)]
        entered: list[Entry] = []
        while pending:
            if not pending[-1]:
                pending.pop()
                if len(pending) > 0:
                    done = entered.pop()
                    stack.pop()
                    if self.after:
                        yield Entry(stack.fd, done.name, done.rel, done.st, after=True)
                continue
            name = pending[-1].pop()
            prefix = entered[-1].rel + "/" if entered else ""
            entry = self._lstat(stack.fd, name, prefix + name)
            if entry is None:
                continue
            self._pruned = False
            yield entry
            if not entry.is_dir or self._pruned:
                continue
            children = self._enter(entry)
            if children is not None:
                entered.append(entry)
                pending.append(children)
        assert stack.depth == base

    def _lstat(self, dir_fd: int, name: str, rel: str) -> Entry | None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in GONE:
                raise
            self.skipped += 1
            return None
        return Entry(dir_fd, name, rel, st)

    def _enter(self, entry: Entry) -> list[str] | None:
        """Push the dir and list it; None (skipped) when it is gone or no longer that dir."""
        try:
            st = self.stack.push(entry.name)
        except OSError as exc:
            if exc.errno not in GONE:
                raise
            self.skipped += 1
            return None
        if (st.st_dev, st.st_ino) != (entry.st.st_dev, entry.st.st_ino):
            self.stack.pop()  # swapped between lstat and open: not the dir we were shown
            self.skipped += 1
            return None
        return self._names(self.stack.fd)

    @staticmethod
    def _names(fd: int) -> list[str]:
        """The names in dir fd `fd`, last first (popped from the end)."""
        return sorted(os.listdir(fd), reverse=True)


def walk(path: str | bytes | os.PathLike, *, after: bool = False) -> Iterator[Entry]:
    """Every entry below the dir at `path` (see Walk); the fds are closed at the end."""
    with DirStack.open(path) as stack:
        yield from Walk(stack, after=after)


def clear_at(dir_fd: int) -> None:
    """Delete everything inside the dir fd `dir_fd`, at any depth, links removed not followed;
    dirs with no write or search bit (overlay's work dirs) are given one first."""
    with DirStack(os.dup(dir_fd)) as stack:
        _make_writable(stack.fd)
        walker = Walk(stack, after=True)
        for entry in walker:
            if entry.after:
                _rmdir(entry)
            elif entry.is_dir:
                _make_writable_at(entry)
            else:
                _unlink(entry)


def _make_writable(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_mode & 0o700 != 0o700:
        os.chmod(fd, stat.S_IMODE(st.st_mode) | 0o700)


def _make_writable_at(entry: Entry) -> None:
    if entry.st.st_mode & 0o700 != 0o700:
        try:
            os.chmod(entry.name, stat.S_IMODE(entry.st.st_mode) | 0o700, dir_fd=entry.dir_fd,
                     follow_symlinks=False)
        except NotImplementedError:  # no fchmodat(AT_SYMLINK_NOFOLLOW): it is a dir, no link
            os.chmod(entry.name, stat.S_IMODE(entry.st.st_mode) | 0o700, dir_fd=entry.dir_fd)
        except FileNotFoundError:
            pass


def _rmdir(entry: Entry) -> None:
    try:
        os.rmdir(entry.name, dir_fd=entry.dir_fd)
    except FileNotFoundError:
        pass


def _unlink(entry: Entry) -> None:
    try:
        os.unlink(entry.name, dir_fd=entry.dir_fd)
    except FileNotFoundError:
        pass


def remove_at(dir_fd: int | None, name: str | bytes) -> None:
    """rm -rf of the entry `name` in dir fd `dir_fd` (None: a path), at any depth."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = open_dir_at(name, dir_fd)
    except PermissionError:  # a 000 dir (not searchable by a non-root owner): open it up
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = open_dir_at(name, dir_fd)
    try:
        clear_at(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
