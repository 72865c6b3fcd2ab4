"""Squash: merge a build's layer dirs (overlay lowerdir format) into one layer dir.

`minibuild build --squash` keeps the base image's layers as they are and replaces the layers the
build added with one. The result is again in overlay lowerdir format and must show, stacked on the
base, exactly what the original layers showed:

    overlay(lowerdir=target:base...) == overlay(lowerdir=layers[-1]:...:layers[0]:base...)

Layers are applied bottom to top with overlay's rules. A whiteout or an opaque marker survives
only where it still has something of the base to hide; whiteouts of paths the build itself added
simply vanish.

File bodies are COPIED (copy_file_range, in-kernel), not hardlinked from the source layers: the
source dirs are shared by the store and the cache, a hardlink shares the inode's mode, owner and
xattrs (so trusted.overlay.origin from a copy-up could not be dropped from the target), and one
later chmod/chown on the squashed layer would silently change every image using the sources.
Sockets are dropped, as snapshot.write_layer drops them (a tar cannot hold one).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from minibuild.fs.files import remove_tree
from minibuild.layer import whiteout
from minibuild.layer.xattrs import TRUSTED_OPAQUE, layer_xattrs, opaque_xattr
from minibuild.errors import LayerError

OPAQUE_XATTR = TRUSTED_OPAQUE  # as real root; see opaque_xattr()
_COPY_CHUNK = 1 << 30  # copy_file_range request size: the kernel loops inside
_FALLBACK_CHUNK = 1 << 20

Parts = tuple[bytes, ...]


def squash_layers(layers: Sequence[Path], base_lowers: Sequence[Path], target: Path) -> None:
    """Merge `layers` (bottom first) into the empty dir `target`, in overlay lowerdir format.

    `base_lowers` (top first) lie below the result: they decide which whiteouts and opaque
    markers must stay. Raises LayerError (with the path) on anything that cannot be represented.
    """
    root = os.fsencode(target)
    try:
        if os.listdir(root):
            raise LayerError(f"squash target {os.fsdecode(root)!r} is not empty")
        squasher = _Squasher(root, [os.fsencode(p) for p in base_lowers])
        for layer in layers:
            squasher.apply_layer(os.fsencode(layer))
        squasher.finish()
    except OSError as e:
        raise LayerError(f"cannot squash into {os.fsdecode(root)!r}: {e}") from e


def _join(root: bytes, parts: Parts) -> bytes:
    """The path of `parts` under `root` (bytes all the way: names need not be UTF-8)."""
    return b"/".join((root, *parts))


def _lstat(path: bytes) -> os.stat_result | None:
    """lstat, or None when nothing is there."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_whiteout(path: bytes, st: os.stat_result) -> bool:
    """True for an overlay whiteout (xattrs are read only for candidates)."""
    if stat.S_ISCHR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0):
        return whiteout.is_overlay_whiteout(st, layer_xattrs(path))
    return False


def _is_opaque(path: bytes, st: os.stat_result) -> bool:
    """True for a dir marked opaque (trusted. or user.overlay.opaque = "y")."""
    return stat.S_ISDIR(st.st_mode) and whiteout.is_overlay_opaque(st, layer_xattrs(path))


def base_lookup(lowers: Sequence[bytes], parts: Parts) -> os.stat_result | None:
    """What the stacked `lowers` (top first) show at `parts`, with overlay lookup rules; or None.

    A whiteout hides the path in every lower layer; a non-dir ends the stack below it; an
    opaque dir keeps the layers below it out of the merged dir.
    """
    stack = list(lowers)
    for depth in range(1, len(parts) + 1):
        sub = parts[:depth]
        merged: list[bytes] = []
        for lower in stack:
            path = _join(lower, sub)
            st = _lstat(path)
            if st is None:
                continue
            if _is_whiteout(path, st):
                break
            if depth == len(parts):
                return st
            if not stat.S_ISDIR(st.st_mode):
                break  # a file over deeper layers' dirs: nothing below it is reachable
            merged.append(lower)
            if _is_opaque(path, st):
                break
        if not merged:
            return None
        stack = merged
    return None  # parts == (): the root itself is not looked up


def _remove(path: bytes) -> os.stat_result | None:
    """Remove whatever stands at `path` (a whole subtree for a dir); return what was there."""
    st = _lstat(path)
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        os.unlink(path)
    return st


def _copy_data(src: bytes, dst_fd: int) -> None:
    """Copy a file's bytes in the kernel (copy_file_range), with a read/write fallback."""
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            while os.copy_file_range(src_fd, dst_fd, _COPY_CHUNK):
                pass
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        # copy_file_range advanced both offsets by what it copied: go on from there
        while chunk := os.read(src_fd, _FALLBACK_CHUNK):
            os.write(dst_fd, chunk)
    finally:
        os.close(src_fd)


class _Squasher:
    """Applies layer dirs onto the target one after another; dir modes and mtimes at the end."""

    def __init__(self, root: bytes, base: list[bytes]) -> None:
        self.root = root
        self.base = base
        self.dir_attrs: dict[Parts, tuple[int, int]] = {}  # mode, mtime_ns: set last
        self.links: dict[tuple[int, int], bytes] = {}  # source inode -> first target path

    def _target_hides(self, parts: Parts) -> bool:
        """True when an ancestor dir of `parts` in the target is opaque (the base is hidden)."""
        for depth in range(len(parts)):
            try:
                path = _join(self.root, parts[:depth])
                if os.getxattr(path, opaque_xattr(), follow_symlinks=False) == b"y":
                    return True
            except OSError as e:
                if e.errno != errno.ENODATA:
                    raise
        return False

    def _base_has(self, parts: Parts, want_dir: bool = False) -> bool:
        """True when the base shows something (a dir, if `want_dir`) at `parts` below the target."""
        if not parts:
            return bool(self.base)
        st = base_lookup(self.base, parts)
        if st is None or (want_dir and not stat.S_ISDIR(st.st_mode)):
            return False
        return not self._target_hides(parts)

    def apply_layer(self, layer: bytes) -> None:
        """Apply one layer dir (walked depth-first, parents before children) onto the target."""
        self.links = {}  # hardlinks pair up within one source layer only
        stack: list[Parts] = [()]
        while stack:
            parts = stack.pop()
            src = _join(layer, parts)
            try:
                if not self._entry(src, parts):
                    continue
                with os.scandir(src) as it:
                    names = sorted((e.name for e in it), reverse=True)
            except OSError as e:
                raise LayerError(f"cannot squash {_tail(os.fsdecode(src))!r}: "
                                 f"{e.strerror or e}") from e
            stack.extend(parts + (name,) for name in names)

    def _entry(self, src: bytes, parts: Parts) -> bool:
        """Apply one source entry; True when it is a directory whose children must follow."""
        st = os.lstat(src)
        xattrs = layer_xattrs(src)
        rel = os.fsdecode(b"/".join(parts)) or "/"
        if whiteout.is_overlay_whiteout(st, xattrs):
            self._whiteout(parts)
            return False
        if parts and whiteout.is_whiteout_basename(parts[-1]):
            whiteout.refuse_real_whiteout_name(rel)
        if xattrs:
            whiteout.unrepresentable(rel, xattrs)
        kept = {k: v for k, v in xattrs.items() if whiteout.keep_xattr(k)}
        if stat.S_ISDIR(st.st_mode):
            self._directory(parts, st, kept, whiteout.is_overlay_opaque(st, xattrs))
            return True
        if stat.S_ISSOCK(st.st_mode):
            return False  # dropped, as snapshot drops it
        _remove(_join(self.root, parts))
        self._non_dir(src, parts, st, kept)
        return False

    def _whiteout(self, parts: Parts) -> None:
        """Delete the target's path; keep a whiteout only if the base has something there."""
        if not parts:
            raise LayerError("a layer's root is a whiteout")
        path = _join(self.root, parts)
        _remove(path)
        if self._base_has(parts):
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def _directory(self, parts: Parts, st: os.stat_result, kept: dict[str, bytes],
                   opaque: bool) -> None:
        """Merge a dir onto the target's dir, or replace what the target has there."""
        path = _join(self.root, parts)
        old = _lstat(path)
        was_opaque = old is not None and _is_opaque(path, old)
        if old is not None and stat.S_ISDIR(old.st_mode):
            if opaque:
                for name in os.listdir(path):
                    _remove(path + b"/" + name)
        else:
            # A non-dir (or whiteout) in the target hid the base's dir: the new dir must too.
            opaque = opaque or old is not None
            _remove(path)
            os.mkdir(path, 0o700)
        hide = (opaque or was_opaque) and self._base_has(parts, want_dir=True)
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        _replace_xattrs(path, kept, hide)
        self.dir_attrs[parts] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns)

    def _non_dir(self, src: bytes, parts: Parts, st: os.stat_result,
                 kept: dict[str, bytes]) -> None:
        """Create a file, symlink, fifo or device (or a hardlink to this layer's earlier copy)."""
        path = _join(self.root, parts)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], path, follow_symlinks=False)
            return
        mode = st.st_mode
        if stat.S_ISREG(mode):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags, 0o600)
            try:
                _copy_data(src, fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), path)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(path, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            raise LayerError(f"{os.fsdecode(src)!r}: unsupported file type {stat.S_IFMT(mode):o}")
        _set_attrs(path, st, kept)
        if st.st_nlink > 1:
            self.links[key] = path

    def finish(self) -> None:
        """Set directory modes and mtimes last, deepest first, so children do not disturb them.

        A dir recorded by one layer may have been replaced since (say its parent by a symlink):
        only dirs reached through real dirs are touched.
        """
        real: set[Parts] = set()
        for parts in sorted(self.dir_attrs, key=len):
            if parts and parts[:-1] not in real:
                continue
            st = _lstat(_join(self.root, parts))
            if st is not None and stat.S_ISDIR(st.st_mode):
                real.add(parts)
        for parts in sorted(real, key=len, reverse=True):
            path = _join(self.root, parts)
            mode, mtime_ns = self.dir_attrs[parts]
            os.chmod(path, mode)  # a verified real dir
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def _set_attrs(path: bytes, st: os.stat_result, kept: dict[str, bytes]) -> None:
    """Owner, then mode (chown clears setuid), then xattrs (chown clears capabilities), mtime."""
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    for name, value in kept.items():
        os.setxattr(path, name, value, follow_symlinks=False)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _replace_xattrs(path: bytes, kept: dict[str, bytes], opaque: bool) -> None:
    """Make a target dir's xattrs exactly `kept` (the upper's), plus the opaque marker if asked."""
    for name in os.listxattr(path, follow_symlinks=False):
        if name not in kept and (whiteout.keep_xattr(name) or whiteout.is_overlay_xattr(name)):
            os.removexattr(path, name, follow_symlinks=False)
    for name, value in kept.items():
        os.setxattr(path, name, value, follow_symlinks=False)
    if opaque:
        os.setxattr(path, opaque_xattr(), b"y", follow_symlinks=False)


def _tail(path: str, keep: int = 80) -> str:
    """A path for an error line: its last `keep` characters (a tree past PATH_MAX, which squash
    cannot walk yet, has paths of thousands)."""
    return path if len(path) <= keep else "…" + path[-keep:]
