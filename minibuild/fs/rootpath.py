"""Paths inside an image root, resolved as a chroot would: symlinks never lead out.

Two trees for the one walk of rootwalk.py: host paths looked at with lstat (`resolve_in_root`,
for roots nobody else writes to meanwhile) and O_PATH fds opened one name at a time with
O_NOFOLLOW (`open_in_root`, for a root another process may change while we walk it). An image
seen through its layer dirs is a third tree (layer/layerpath.py); `ImagePath` is what such a
lookup reports.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from minibuild.errors import BuildError
from minibuild.fs.rootwalk import LinkLoop, walk


@dataclass(frozen=True)
class ImagePath:
    """Where an image path leads: its components with symlinks resolved, and the image's
    entry for each leading component that exists (the rest are missing)."""

    parts: tuple[str, ...]
    found: tuple[os.stat_result, ...]  # lstat of the entry, one per existing part

    @property
    def exists(self) -> bool:
        """True when the whole path exists in the image."""
        return len(self.found) == len(self.parts)

    @property
    def path(self) -> str:
        """The resolved path, absolute."""
        return "/" + "/".join(self.parts)

    def is_dir(self) -> bool:
        """True when the path exists and is a directory."""
        return self.exists and (not self.found or stat.S_ISDIR(self.found[-1].st_mode))


# -- host paths ------------------------------------------------------------------------------


class _HostTree:
    """Nodes are (host path, is a link); a missing entry, or one below a file, is None."""

    def __init__(self, root: str) -> None:
        self._root = root

    def root(self) -> tuple[str, bool]:
        """The root path."""
        return self._root, False

    def child(self, parent: tuple[str, bool], name: str, last: bool) -> tuple[str, bool] | None:
        """lstat of the entry."""
        host = os.path.join(parent[0], name)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return host, stat.S_ISLNK(st.st_mode)

    def link(self, node: tuple[str, bool]) -> str | None:
        """readlink of a link."""
        return os.readlink(node[0]) if node[1] else None

    def release(self, node: tuple[str, bool]) -> None:
        """Nothing to let go of."""


def resolve_in_root(root: str, path: str, *, follow_last: bool = True) -> str:
    """The host path of an image path, following symlinks as if chrooted into `root`.

    Absolute link targets start again at `root` and `..` stops at it, so the result is
    always inside `root`. Missing components are kept as written.
    """
    try:
        found = walk(_HostTree(root), path, follow_last=follow_last)
    except LinkLoop:
        raise BuildError(f"too many levels of symbolic links in {path}") from None
    return os.path.join(root, *found.parts, *found.rest)


# -- O_PATH fds ------------------------------------------------------------------------------


_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _FdTree:
    """Nodes are O_PATH fds, each opened by one name relative to its parent's fd with
    O_NOFOLLOW; a missing entry raises FileNotFoundError (or is made, with `make`)."""

    def __init__(self, root: int, make: bool, file: bool) -> None:
        self._root = root
        self._make = make
        self._file = file

    def root(self) -> int:
        """A duplicate of the root fd (the walk closes what it holds)."""
        return os.dup(self._root)

    def child(self, parent: int, name: str, last: bool) -> int:
        """An O_PATH fd on the entry, made first when missing and asked to."""
        return _open_or_make(parent, name, self._make, self._file and last)

    def link(self, node: int) -> str | None:
        """The target of the link the fd is on, read through the fd itself."""
        if not stat.S_ISLNK(os.fstat(node).st_mode):
            return None
        return os.readlink("", dir_fd=node)

    def release(self, node: int) -> None:
        """Close the fd."""
        os.close(node)


def open_in_root(root: int, path: str, *, make: bool = False, file: bool = False) -> int:
    """An O_PATH fd on `path` inside the dir fd `root`, symlinks resolved as a chroot would
    (absolute targets start again at the root, `..` stops there) by reading each link
    ourselves: every lookup is one name relative to a dir fd we hold, never a path the kernel
    walks, so nothing swapped meanwhile leads outside the root. With `make`, missing
    components are made (dirs 0755; the last one an empty 0644 file when `file`). An OSError
    (ELOOP for a link loop) when the path cannot be opened."""
    found = walk(_FdTree(root, make, file), path)
    try:
        return os.dup(found.nodes[-1])
    finally:
        for fd in found.nodes:
            os.close(fd)


def _open_or_make(parent: int, name: str, make: bool, file: bool) -> int:
    """An O_PATH fd on `name` in dir fd `parent`, made first when missing and `make`."""
    try:
        return os.open(name, _PATH, dir_fd=parent)
    except FileNotFoundError:
        if not make:
            raise
    try:
        if file:  # O_EXCL: a link planted meanwhile is not followed
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644, dir_fd=parent))
        else:
            os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass  # made by someone else meanwhile: looked at like any other entry
    return os.open(name, _PATH, dir_fd=parent)
