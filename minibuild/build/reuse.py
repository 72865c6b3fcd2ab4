"""A rebuilt COPY reuses the unchanged files of the layer the same COPY made last time.

Before the overlay is mounted, the fresh upper dir gets hard links to every file of that earlier
layer which the copy would write again exactly (same destination, bytes, mode, owner, mtime, no
xattrs), plus the dirs above them; the copier then skips those files (`rootwriter.Reused`), so only
what changed is written through the mount. A hard link shares the inode with the earlier layer,
so nothing may ever write to it: the copier never opens, chmods, chowns, utimes or replaces a
reused file, overlay copies a lower file up to a new inode before any write (index=off), and
`check_untouched` proves after the step that every reused inode is as it was.

Reuse is refused (the plain copy runs) wherever the result could differ from a fresh copy: ADD,
heredocs, COPY --exclude and --parents (their walks are not the plain one), COPY --from (the
caller's rules), a single-file destination, a destination written more than once, a path whose
dirs in the image below are not plain dirs or carry xattrs, anything in the earlier layer that
is not a plain dir or file. The earlier layer must have been made on the same
lower layers (the caller keys it by parent step and lower DiffIDs), so a dir the image below has
gets the attributes overlay's copy-up would give it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from minibuild.build.treewalk import walk_source
from minibuild.build.copier import CopyPlan, destination, source_key
from minibuild.build.rootwriter import Reused
from minibuild.layer.whiteout import is_overlay_xattr

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_DIR, _ABSENT, _OTHER = "dir", "absent", "other"
_Meta = tuple[int, int, int]  # a context entry's st_mode, st_size, st_mtime_ns
_Attrs = tuple[int, int, int, int, int]  # a file's mode bits, uid, gid, mtime_ns, size


class ReuseCorrupted(RuntimeError):
    """A reused (hard-linked) file changed during the step: an earlier layer was written to.

    Not a MinibuildError on purpose: it is a bug of ours, reported as an internal error.
    """


@dataclass(frozen=True)
class Linked:
    """What link_unchanged put in the upper dir."""

    reused: Reused  # for the copier: leave these files alone
    inodes: dict[str, tuple[int, int]]  # image path -> (st_ino, st_ctime_ns) once linked
    previous: Path  # the earlier layer's dir


def link_unchanged(plan: CopyPlan, context: Path, previous: Path, lowers: Sequence[Path],
                   upper: Path) -> Linked | None:
    """Hard-link into the empty `upper` every file of `previous` that the copy would write again
    unchanged (with the dirs above them); None when nothing can be reused."""
    writes = copy_targets(plan, str(context))
    if writes is None:
        return None
    mode, owner = _chmod(plan.chmod), _chown(plan.chown)
    if mode is False:
        return None
    checker = _Checker(writes, [str(p) for p in lowers], str(previous))
    chosen: dict[str, tuple[str, _Attrs]] = {}  # image -> (context path, the linked file's)
    seen: set[tuple[int, int]] = set()
    dev = os.stat(upper).st_dev
    for image, found in writes.items():
        if len(found) != 1 or found[0][0] != "file":
            continue
        if owner is None and image.lstrip("/") in _ACCOUNTS:
            continue  # --chown names resolve from the image's own files, not the copy's
        _, key, (src_mode, size, mtime_ns) = found[0]
        want = (mode if mode is not None else stat.S_IMODE(src_mode), owner, size, mtime_ns)
        prev = checker.file(image, want, dev, seen)
        if prev is not None and _same_content(f"{context}/{key}", prev[0], size):
            chosen[image] = (key, prev[1])
    if not chosen:
        return None
    return _build(chosen, checker, previous, lowers, upper)


# The copier reads these through the mount for --chown names: a reused copy would shadow the
# image's own before the names are resolved.
_ACCOUNTS = frozenset({"etc/passwd", "etc/group"})
_LONG = 1000  # chars of a source path past which reuse is not tried (PATH_MAX is 4096 bytes)


def copy_targets(plan: CopyPlan, context: str) -> dict[str, list[tuple[str, str, _Meta]]] | None:
    """Every image path the copy writes, with what lands there: (kind, context path, (st_mode,
    size, mtime_ns)) per write; None for a copy whose targets depend on the image (or that is
    never reused)."""
    if plan.unpack_archives or plan.inline or not plan.sources or plan.exclude or plan.parents:
        return None
    dest, want_dir = destination(plan)
    writes: dict[str, list[tuple[str, str, _Meta]]] = defaultdict(list)
    for source in plan.sources:
        if source.kind == "dir":
            writes[dest].append(("dir", source.relpath, (stat.S_IFDIR, 0, 0)))
            for entry in walk_source(context, source.relpath, plan.ignore):
                if len(entry.relpath) > _LONG:
                    return None  # reuse checks by path: a tree this deep is copied plainly
                writes[posixpath.join(dest, entry.relpath)].append(
                    (entry.kind, source_key(source.relpath, entry.relpath), _meta(entry.stat)))
        elif not want_dir:
            return None  # COPY file /path: a file or into a dir, depending on the image
        else:
            st = os.lstat(os.path.join(context, source.relpath))
            writes[posixpath.join(dest, source.dest_name)].append((source.kind, source.relpath, _meta(st)))
    return writes


def _chmod(spec: str | None) -> int | None | bool:
    """--chmod as bits, None without it, False when the copier would refuse it."""
    if spec is None:
        return None
    return int(spec, 8) if re.fullmatch(r"[0-7]{1,4}", spec) else False


def _chown(spec: str | None) -> tuple[int, int] | None:
    """--chown as numbers when it is numeric or absent; None for names (the copier checks)."""
    if spec is None:
        return 0, 0
    user, _, group = spec.partition(":")
    if user.isdigit() and (not group or group.isdigit()):
        return int(user), int(group) if group else int(user)
    return None


class _Checker:
    """Judges paths against the copy's writes, the image below (lowers) and the earlier layer."""

    def __init__(self, writes, lowers: list[str], previous: str) -> None:
        self.writes = writes
        self.previous = previous
        self.dirs: dict[str, tuple[str, os.stat_result | None] | None] = {"/": (_DIR, None)}
        # image dir -> the lower layers (top first) through which overlay looks up its entries
        self.layers: dict[str, tuple[str, ...]] = {"/": tuple(lowers)}

    def view(self, image: str) -> tuple[str, os.stat_result | None]:
        """What the image below has at a path whose parent dir was judged: a dir (with its
        stat), nothing, or something else. As overlay looks up: the top layer with an entry
        decides."""
        for layer in self.layers.get(_parent(image), ()):
            try:
                st = os.lstat(layer + image)
            except FileNotFoundError:
                continue
            return (_DIR, st) if stat.S_ISDIR(st.st_mode) else (_OTHER, None)
        return _ABSENT, None

    def _below(self, image: str) -> tuple[str, ...]:
        """The layers in which a dir of the image below is a dir, top first, up to the first
        opaque one (which hides the rest) or one that has something else there."""
        found = []
        for layer in self.layers.get(_parent(image), ()):
            try:
                st = os.lstat(layer + image)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            found.append(layer)
            if _opaque(layer + image):
                break
        return tuple(found)

    def dir(self, image: str) -> tuple[str, os.stat_result | None] | None:
        """(view, stat below) when a dir above a reused file may be made in the upper, else None."""
        if image in self.dirs:
            return self.dirs[image]
        result = None
        parent_ok = self.dir(_parent(image)) is not None
        if parent_ok and all(kind == "dir" for kind, _, _ in self.writes.get(image, ())):
            kind, st = self.view(image)
            if kind == _DIR:
                self.layers[image] = self._below(image)
                if _xattrs(self.layers[image][0] + image):
                    st = None  # copy-up would carry xattrs: not made by hand
            prev = self.previous + image
            try:
                plain = stat.S_ISDIR(os.lstat(prev).st_mode) and not _xattrs(prev)
            except FileNotFoundError:
                plain = False
            if plain and (kind == _ABSENT or (kind == _DIR and st is not None)):
                result = (kind, st)
        self.dirs[image] = result
        return result

    def file(self, image: str, want, dev: int,
             seen: set[tuple[int, int]]) -> tuple[str, _Attrs] | None:
        """The earlier layer's path (and its file's attributes) of a file that matches what
        the copy writes at `image` (but for the bytes, compared by the caller), else None."""
        parent = _parent(image)
        if self.dir(parent) is None or (parent in self.layers and self.view(image)[0] == _DIR):
            return None
        mode, owner, size, mtime_ns = want
        prev = self.previous + image
        try:
            st = os.lstat(prev)
        except FileNotFoundError:
            return None
        if not (stat.S_ISREG(st.st_mode) and st.st_size == size
                and stat.S_IMODE(st.st_mode) == mode and st.st_mtime_ns == mtime_ns
                and (owner is None or (st.st_uid, st.st_gid) == owner)
                and st.st_dev == dev and (st.st_dev, st.st_ino) not in seen and not _xattrs(prev)):
            return None
        seen.add((st.st_dev, st.st_ino))
        return prev, (mode, st.st_uid, st.st_gid, mtime_ns, size)


def _meta(st: os.stat_result) -> _Meta:
    return st.st_mode, st.st_size, st.st_mtime_ns


def _parent(image: str) -> str:
    """The dir of a normalised absolute image path (posixpath.dirname, cheaper)."""
    return image.rpartition("/")[0] or "/"


def _xattrs(path: str) -> bool:
    """True when a path has an xattr a copy or a copy-up would carry (overlay's own aside),
    or overlay's opaque marker."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        return exc.errno not in (errno.ENOTSUP, errno.EPERM)  # gone or unreadable: not reused
    return any(not is_overlay_xattr(n) or n.endswith(".opaque") for n in names)


def _opaque(path: str) -> bool:
    """True when a lower dir is opaque (hides the layers below it)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False
    return any(is_overlay_xattr(n) and n.endswith(".opaque") for n in names)


def _same_content(a: str, b: str, size: int) -> bool:
    """True when two regular files hold the same bytes (their sizes were found equal)."""
    step = min(size, _CHUNK) + 1  # one read per small file, and its EOF seen at once
    try:
        fa = os.open(a, _OPEN)
    except OSError:
        return False
    try:
        fb = os.open(b, _OPEN)
    except OSError:
        os.close(fa)
        return False
    try:
        while True:
            da = os.read(fa, step)
            if da != os.read(fb, step):
                return False
            if len(da) < step:
                return True
    except OSError:  # e.g. the context file became a dir meanwhile: just do not reuse it
        return False
    finally:
        os.close(fa)
        os.close(fb)


def _build(chosen: dict[str, tuple[str, _Attrs]], checker: _Checker, previous: Path, lowers: Sequence[Path],
           upper: Path) -> Linked | None:
    """Make the dirs and hard links in the upper dir; what was linked."""
    _root_like_image(upper, lowers)
    up, prev = str(upper), str(previous)
    dirs: set[str] = set()
    for parent in {_parent(image) for image in chosen}:
        while parent != "/" and parent not in dirs:
            dirs.add(parent)
            parent = _parent(parent)
    premade: set[str] = set()
    for image in sorted(dirs):  # parents first
        kind, st = checker.dirs[image]
        os.mkdir(up + image, 0o755)
        if kind == _ABSENT:
            premade.add(image)  # the copier gives it its mode and owner
            os.chmod(up + image, 0o755)
        else:  # what overlay's copy-up of the image's dir would give
            os.chown(up + image, st.st_uid, st.st_gid)
            os.chmod(up + image, stat.S_IMODE(st.st_mode))
    files: dict[str, str] = {}
    attrs: dict[str, _Attrs] = {}
    link = os.link
    for image, (key, linked_attrs) in chosen.items():
        try:
            link(prev + image, up + image, follow_symlinks=False)
        except OSError:
            continue  # EMLINK, EXDEV...: this one is copied as usual
        files[image] = key
        attrs[image] = linked_attrs
    # A dir of the image below that gets no new entry keeps its mtime, as copy-up keeps it.
    touched = {_parent(p) for p in files} | {_parent(d) for d in premade}
    for image in dirs:
        kind, st = checker.dirs[image]
        if kind == _DIR and image not in touched:
            os.utime(up + image, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    if not files:  # leave the upper dir empty, as the plain copy expects it
        for image in sorted(dirs, reverse=True):
            os.rmdir(up + image)
        return None
    lstat = os.lstat
    inodes = {image: (st.st_ino, st.st_ctime_ns) for image in files for st in (lstat(up + image),)}
    return Linked(Reused(files, attrs, frozenset(premade)), inodes, previous)


def _root_like_image(upper: Path, lowers: Sequence[Path]) -> None:
    """Give the upper dir the image root's mode and owner, as the sandbox does for an empty one
    (overlay shows `/` with the upper's)."""
    st = os.stat(lowers[0]) if lowers else None
    uid, gid, mode = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) if st else (0, 0, 0o755)
    os.chown(upper, uid, gid)
    os.chmod(upper, mode)


def check_untouched(linked: Linked, upper: Path, context: Path) -> None:
    """Raise ReuseCorrupted when a reused file is not the inode that was linked, or that inode
    changed. A new ctime alone (another build linking the same inode, gc unlinking an old name)
    is fine while mode, owner, mtime, size and bytes are still what the copy wanted."""
    up = str(upper)
    for image, (ino, ctime) in linked.inodes.items():
        try:
            st = os.lstat(up + image)
        except FileNotFoundError:
            st = None
        if st is None or st.st_ino != ino:
            pass  # the name now holds another inode (or none): the copy replaced it
        elif st.st_ctime_ns == ctime or _unchanged(st, linked.reused.attrs[image], up + image,
                                                   f"{context}/{linked.reused.files[image]}"):
            continue
        raise ReuseCorrupted(
            f"the reused file {image} (a hard link into the earlier layer {linked.previous}) "
            "changed during the step; that layer dir may be damaged: remove it (it is unpacked "
            "again from its blob when needed) and build again")


def _unchanged(st: os.stat_result, was: _Attrs, path: str,
               source: str) -> bool:
    """True when only the ctime of a reused file moved: still a regular file with the mode,
    owner, mtime and size it was linked with, and the source's bytes."""
    now = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size)
    return stat.S_ISREG(st.st_mode) and now == was and _same_content(source, path, st.st_size)
