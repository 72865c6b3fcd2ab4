"""COPY/ADD into an image root: Docker's destination rules, ownership, modes and ADD unpacking.

In production `apply_copy` runs in a child that did chdir(context) then chroot(merged), with
root="/". Every image path still goes through `resolve_in_root`, so unit tests can point `root`
at a plain directory and get the same symlink behaviour a chroot gives.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO

import zstandard

from minibuild.fs.rootpath import resolve_in_root
from minibuild.build.context import Source
from minibuild.build.treewalk import walk_source
from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.errors import BuildError, MinibuildError
from minibuild.fs.users import resolve_user

_ROOT_OWNER = (0, 0)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CopyPlan:
    """Everything one COPY/ADD step needs, already expanded and resolved on the host."""

    sources: tuple[Source, ...]  # from BuildContext.select_sources (empty when only heredocs)
    inline: tuple[tuple[str, bytes], ...]  # heredoc files: (name, content)
    dest: str  # as written, after expansion (a trailing "/" means a directory)
    workdir: str  # the image WORKDIR, for a relative dest
    chown: str | None  # --chown value, names resolved through the image's passwd/group
    chmod: str | None  # --chmod value, octal only for now
    unpack_archives: bool  # ADD: a local tar (any compression) is extracted into dest
    ignore: IgnoreRules | None  # skips excluded files while walking a source dir
    reuse: Reused | None = None  # files already in place (hard links made before the mount)


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


def source_key(relpath: str, below: str = "") -> str:
    """The context path of a source entry: the source's relpath, then the path below it."""
    if not below:
        return relpath
    return below if relpath in ("", ".") else f"{relpath}/{below}"


def destination(plan: CopyPlan) -> tuple[str, bool]:
    """The absolute image path of the destination and whether it must be a directory."""
    return _dest(plan)


@dataclass(frozen=True)
class _Attrs:
    """What a written entry ends up with."""

    mode: int
    owner: tuple[int, int]
    mtime_ns: int


@dataclass(frozen=True)
class _Job:
    """One apply_copy call, resolved: where to read, where to write, as whom."""

    root: str
    context: str
    owner: tuple[int, int]
    mode: int | None
    ignore: IgnoreRules | None
    unpack: bool
    verb: str
    chown_given: bool
    reuse: Reused | None = None
    claimed: set[str] = field(default_factory=set)  # reused image paths the walk reached
    finished: set[str] = field(default_factory=set)  # premade dirs already treated as created

    def attrs(self, st: os.stat_result) -> _Attrs:
        """Attributes for an entry copied from the context."""
        mode = self.mode if self.mode is not None else stat.S_IMODE(st.st_mode)
        return _Attrs(mode, self.owner, st.st_mtime_ns)


def apply_copy(plan: CopyPlan, root: str = "/", context: str = ".") -> None:
    """Carry out one COPY/ADD: read sources under `context`, write under image `root`."""
    verb = "ADD" if plan.unpack_archives else "COPY"
    dest, want_dir = _dest(plan)
    count = len(plan.sources) + len(plan.inline)
    if count == 0:
        raise BuildError(f"{verb} failed: no source files were specified")
    if count > 1 and not want_dir:
        raise BuildError(f"When using {verb} with more than one source file, the destination "
                         f"must be a directory and end with a / (got {plan.dest!r})")
    job = _Job(root, context, _owner(plan.chown, root), _parse_chmod(plan.chmod),
               plan.ignore, plan.unpack_archives, verb, plan.chown is not None, plan.reuse)
    for source in plan.sources:
        if source.kind == "dir":
            _copy_tree(job, source, dest)
        else:
            _copy_one(job, source, dest, want_dir)
    for name, content in plan.inline:
        target = _file_target(job, dest, want_dir, name)
        mode = job.mode if job.mode is not None else 0o644
        # mtime 0 keeps heredoc layers identical from one build to the next.
        _put_file(job, target, io.BytesIO(content), _Attrs(mode, job.owner, 0))
    if job.reuse is not None and len(job.claimed) != len(job.reuse.files):
        missed = sorted(set(job.reuse.files) - job.claimed)
        raise ReuseMismatch(f"{verb}: {len(missed)} reused files were not reached, e.g. {missed[0]}")


def _reused(job: _Job, target: str, key: str, attrs: _Attrs, size: int) -> bool:
    """True when target is a reused file for exactly this source entry, already as the copy
    would write it; then nothing is written there."""
    if job.reuse is None:
        return False
    image = target if job.root == "/" else _image_path(job.root, target)
    expected = job.reuse.files.get(image)
    if expected is None:
        return False
    if expected != key or image in job.claimed:
        raise ReuseMismatch(f"{job.verb}: {image} is reused for {expected}, but {key} lands there")
    if job.reuse.attrs.get(image) != (attrs.mode, *attrs.owner, attrs.mtime_ns, size):
        raise ReuseMismatch(f"{job.verb}: the reused {image} differs from what the copy writes")
    job.claimed.add(image)
    return True


def _guard(job: _Job, target: str) -> None:
    """Refuse to replace a reused file: its inode belongs to an earlier layer too."""
    if job.reuse is not None:
        image = target if job.root == "/" else _image_path(job.root, target)
        if image in job.reuse.files:
            raise ReuseMismatch(f"{job.verb}: the copy would replace the reused file {image}")


def _premade(job: _Job, host: str) -> bool:
    """True (once per dir) when a dir exists only because reuse made it before the copy: the
    first time the copy would have created it, it treats it as just created."""
    if job.reuse is None or not job.reuse.premade:
        return False
    image = host if job.root == "/" else _image_path(job.root, host)
    if image not in job.reuse.premade or image in job.finished:
        return False
    job.finished.add(image)
    return True


def _dest(plan: CopyPlan) -> tuple[str, bool]:
    """The absolute image path of the destination and whether it must be a directory."""
    d = plan.dest
    want_dir = d.endswith("/") or posixpath.basename(d) in (".", "..") or d == ""
    joined = d if d.startswith("/") else posixpath.join(plan.workdir or "/", d)
    return posixpath.normpath("/" + joined.lstrip("/")), want_dir


def _owner(spec: str | None, root: str) -> tuple[int, int]:
    """uid/gid for --chown: numbers as given (gid defaults to uid), names via the image."""
    if spec is None:
        return _ROOT_OWNER
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise BuildError(f"--chown={spec}: want user, user:group, uid or uid:gid")
    if user.isdigit() and (not group or group.isdigit()):
        uid = int(user)
        return uid, int(group) if group else uid
    passwd = _read_image_file(root, "/etc/passwd")
    groups = _read_image_file(root, "/etc/group")
    try:
        resolved = resolve_user(spec, passwd, groups)
    except MinibuildError as exc:
        raise BuildError(f"--chown={spec}: {exc.message}") from exc
    return resolved.uid, resolved.gid


def _read_image_file(root: str, path: str) -> str | None:
    """A text file of the image, or None when it does not exist."""
    try:
        with open(resolve_in_root(root, path), encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _parse_chmod(spec: str | None) -> int | None:
    """The --chmod value as permission bits."""
    if spec is None:
        return None
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    raise BuildError(f"--chmod={spec}: only octal modes (like 0755) are supported for now")


def _image_path(root: str, host: str) -> str:
    """The image path of a host path under root."""
    rel = os.path.relpath(host, root)
    return "/" if rel == "." else "/" + rel


def _within(host: str, scope: str) -> bool:
    """True when host is scope or below it."""
    return host == scope or host.startswith(scope.rstrip("/") + "/")


def _chown(target: str | int, owner: tuple[int, int]) -> None:
    """Set ownership of a path (not following links) or of an open fd."""
    try:
        if isinstance(target, int):
            os.fchown(target, *owner)
        else:
            os.lchown(target, *owner)
    except PermissionError:
        # Only root can give files away. Unprivileged runs (unit tests) keep their own ids
        # for the default 0:0, but an explicit other owner that cannot be set is an error.
        if os.geteuid() == 0 or owner != _ROOT_OWNER:
            raise BuildError(f"cannot chown {target} to {owner[0]}:{owner[1]}: permission denied")


def _mkdirs(job: _Job, host: str, last_owner: tuple[int, int]) -> bool:
    """Create missing dirs down to a resolved host path: parents 0755 root, the last one
    owned by last_owner. Return whether the last one was created."""
    rel = os.path.relpath(host, job.root)
    parts = [] if rel == "." else rel.split("/")
    cur, created = job.root, False
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        owner = last_owner if i == len(parts) - 1 else _ROOT_OWNER
        if os.path.isdir(cur) and not os.path.islink(cur):
            created = _premade(job, cur)
            if created:  # made before the mount for reused files: finish it as a new dir
                os.chmod(cur, 0o755)
                _chown(cur, owner)
            continue
        if os.path.lexists(cur):
            _guard(job, cur)
            raise BuildError(f"{job.verb} failed: cannot create directory "
                             f"{_image_path(job.root, host)}: {_image_path(job.root, cur)} "
                             "exists and is not a directory")
        os.mkdir(cur, 0o755)
        os.chmod(cur, 0o755)  # mkdir's mode goes through the umask
        _chown(cur, owner)
        created = True
    return created


def _ensure_dir(job: _Job, image_path: str, owner: tuple[int, int]) -> tuple[str, bool]:
    """The host path of an image dir, created if missing; and whether it was created."""
    host = resolve_in_root(job.root, image_path)
    return host, _mkdirs(job, host, owner)


def _file_target(job: _Job, dest: str, want_dir: bool, name: str) -> str:
    """Where a single file goes: inside dest when it is (or must be) a dir, else dest."""
    host = resolve_in_root(job.root, dest)
    if want_dir or os.path.isdir(host):
        dir_host, _ = _ensure_dir(job, dest, job.owner)
        return os.path.join(dir_host, name)
    _mkdirs(job, os.path.dirname(host), _ROOT_OWNER)
    return host


def _copy_one(job: _Job, source: Source, dest: str, want_dir: bool) -> None:
    """Copy (or, for ADD, maybe unpack) one file or kept symlink."""
    path = os.path.join(job.context, source.relpath)
    if job.unpack and source.kind == "file" and is_tar(path):
        dest_host, _ = _ensure_dir(job, dest, job.owner)
        _extract(job, path, dest_host)
        return
    target = _file_target(job, dest, want_dir, source.dest_name)
    st = os.lstat(path)
    if source.kind == "symlink":
        _put_symlink(job, target, os.readlink(path), job.attrs(st))
        return
    attrs = job.attrs(st)
    if _reused(job, target, source.relpath, attrs, st.st_size):
        return
    with open(path, "rb") as src:
        _put_file(job, target, src, attrs)


def _copy_tree(job: _Job, source: Source, dest: str) -> None:
    """Copy the contents of a context dir into the image dir dest."""
    top, created = _ensure_dir(job, dest, job.owner)
    base = os.path.join(job.context, source.relpath)
    stamps: list[tuple[str, int]] = []
    if created:
        st = os.stat(base)
        os.chmod(top, job.attrs(st).mode)
        stamps.append((top, st.st_mtime_ns))
    dirs = {"": top}
    for entry in walk_source(job.context, source.relpath, job.ignore):
        parent, name = posixpath.split(entry.relpath)
        target = os.path.join(dirs[parent], name)
        attrs = job.attrs(entry.stat)
        if entry.kind == "dir":
            dirs[entry.relpath], stamped = _put_dir(job, target, attrs, job.root)
            if stamped:
                stamps.append((dirs[entry.relpath], attrs.mtime_ns))
        elif entry.kind == "symlink":
            _put_symlink(job, target, os.readlink(os.path.join(base, entry.relpath)), attrs)
        elif not _reused(job, target, source_key(source.relpath, entry.relpath), attrs,
                         entry.stat.st_size):
            with open(os.path.join(base, entry.relpath), "rb") as src:
                _put_file(job, target, src, attrs)
    set_dir_times(stamps)


def set_dir_times(stamps: list[tuple[str, int]]) -> None:
    """Set dir mtimes deepest first, after their children stopped changing them."""
    for host, ns in reversed(stamps):
        os.utime(host, ns=(ns, ns), follow_symlinks=False)


def _clear(job: _Job, target: str) -> None:
    """Make room for a non-directory at target (replacing a file or link is Docker's way)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    _guard(job, target)
    if stat.S_ISDIR(st.st_mode):
        raise BuildError(f"{job.verb} failed: cannot overwrite directory "
                         f"{_image_path(job.root, target)} with a non-directory")
    os.unlink(target)


def _put_dir(job: _Job, target: str, attrs: _Attrs, scope: str) -> tuple[str, bool]:
    """Make target a dir with attrs; an existing link to a dir (inside scope) is followed.

    Returns the host dir to write children into and whether its mtime is ours to set.
    """
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        # e.g. /lib -> usr/lib in merged-/usr images: write through, as a chroot would.
        resolved = resolve_in_root(job.root, _image_path(job.root, target))
        if os.path.isdir(resolved) and _within(resolved, scope):
            return resolved, False
    if st is None or not stat.S_ISDIR(st.st_mode):
        _clear(job, target)
        os.mkdir(target, 0o700)
    _chown(target, attrs.owner)
    os.chmod(target, attrs.mode)  # after chown: chown clears set-id bits
    return target, True


def _put_file(job: _Job, target: str, src: BinaryIO, attrs: _Attrs) -> None:
    """Write a regular file from a stream, replacing what was there."""
    _clear(job, target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600)
    try:
        _pump(src, fd)
        _chown(fd, attrs.owner)
        os.fchmod(fd, attrs.mode)  # after chown: chown clears set-id bits
    finally:
        os.close(fd)
    os.utime(target, ns=(attrs.mtime_ns, attrs.mtime_ns), follow_symlinks=False)


def _pump(src: BinaryIO, fd: int) -> None:
    """Copy a stream into fd: in-kernel sendfile for real files, 1 MiB chunks otherwise."""
    try:
        infd = src.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        infd = None
    if infd is not None:
        try:
            while os.sendfile(fd, infd, None, 1 << 30) > 0:
                pass
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP):
                raise
    with open(fd, "wb", closefd=False, buffering=0) as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _put_symlink(job: _Job, target: str, link: str, attrs: _Attrs) -> None:
    """Create a symlink (kept as data, never followed), replacing what was there."""
    _clear(job, target)
    os.symlink(link, target)
    _chown(target, attrs.owner)
    os.utime(target, ns=(attrs.mtime_ns, attrs.mtime_ns), follow_symlinks=False)


# -- ADD: local archives ------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


@contextmanager
def _decompressed(path: str) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed when its magic number names a known compression."""
    with open(path, "rb") as raw:
        head = raw.read(6)
        raw.seek(0)
        kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
        if kind == "gzip":
            stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
        elif kind == "bzip2":
            stream = bz2.BZ2File(raw)
        elif kind == "xz":
            stream = lzma.LZMAFile(raw)
        elif kind == "zstd":
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            stream = raw
        with stream:
            yield stream


def is_tar(path: str) -> bool:
    """True when a file is a tar, plain or compressed, judged by content and not by name."""
    try:
        with _decompressed(path) as stream:
            block = b""
            while len(block) < tarfile.BLOCKSIZE:
                chunk = stream.read(tarfile.BLOCKSIZE - len(block))
                if not chunk:
                    return False
                block += chunk
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, tarfile.HeaderError):
        return False  # not an archive after all: ADD copies it as a plain file
    return True


def _extract(job: _Job, path: str, dest_host: str) -> None:
    """Unpack a tar into dest_host; no member may land or point outside it."""
    stamps: list[tuple[str, int]] = []
    try:
        with _decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                stamp = _extract_member(job, tf, member, dest_host)
                if stamp is not None:
                    stamps.append(stamp)
    except (tarfile.TarError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise BuildError(f"ADD failed: cannot read archive {path}: {exc}") from exc
    set_dir_times(stamps)


def _member_rel(name: str, archive: str) -> str | None:
    """A member name as a clean relative path (None for the archive root); refuse `..` out."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BuildError(f"ADD failed: archive {archive} has a member escaping "
                                 f"the destination: {name}")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None


def _member_target(job: _Job, dest_host: str, rel: str, archive: str, follow: bool) -> str:
    """The host path for a member, resolved like a chroot would and kept inside dest."""
    image = posixpath.join(_image_path(job.root, dest_host), rel)
    host = resolve_in_root(job.root, image, follow_last=follow)
    if not _within(host, dest_host):
        raise BuildError(f"ADD failed: archive {archive} member {rel} resolves outside "
                         f"the destination (to {_image_path(job.root, host)})")
    return host


def _extract_member(job: _Job, tf: tarfile.TarFile, m: tarfile.TarInfo,
                    dest_host: str) -> tuple[str, int] | None:
    """Write one member; return (dir, mtime_ns) when a dir mtime must be set at the end."""
    archive = tf.name or "archive"
    rel = _member_rel(m.name, archive)
    if rel is None:
        return None
    target = _member_target(job, dest_host, rel, archive, follow=False)
    _mkdirs(job, os.path.dirname(target), _ROOT_OWNER)
    owner = job.owner if job.chown_given else (m.uid, m.gid)
    attrs = _Attrs(m.mode & 0o7777, owner, int(m.mtime * 1_000_000_000))
    if m.isdir():
        host, stamped = _put_dir(job, target, attrs, dest_host)
        return (host, attrs.mtime_ns) if stamped else None
    if m.issym():
        _check_symlink(rel, m.linkname, archive)
        _put_symlink(job, target, m.linkname, attrs)
    elif m.islnk():
        _put_hardlink(job, dest_host, target, m.linkname, archive)
    elif m.isfile():
        src = tf.extractfile(m)
        assert src is not None  # a regular member always has a data stream
        _put_file(job, target, src, attrs)
    elif m.ischr() or m.isblk() or m.isfifo():
        _put_node(job, target, m, attrs)
    return None


def _check_symlink(rel: str, link: str, archive: str) -> None:
    """Refuse a relative link that climbs out of the destination (as Docker does)."""
    if link.startswith("/"):
        return  # absolute targets are image paths, resolved inside the root
    depth = rel.count("/")  # dirs above the link inside the destination
    for part in link.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise BuildError(f"ADD failed: archive {archive} has a symlink escaping "
                                 f"the destination: {rel} -> {link}")
        elif part not in ("", "."):
            depth += 1


def _put_hardlink(job: _Job, dest_host: str, target: str, link: str, archive: str) -> None:
    """Hard link to an earlier member of the same archive."""
    link_rel = _member_rel(link, archive)
    if link_rel is None:
        raise BuildError(f"ADD failed: archive {archive} has a hard link to its root")
    source = _member_target(job, dest_host, link_rel, archive, follow=False)
    _clear(job, target)
    os.link(source, target, follow_symlinks=False)


def _put_node(job: _Job, target: str, m: tarfile.TarInfo, attrs: _Attrs) -> None:
    """A device node or fifo from an archive (devices need root)."""
    _clear(job, target)
    if m.isfifo():
        os.mkfifo(target, 0o600)
    else:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(target, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        except PermissionError as exc:
            raise BuildError(f"ADD failed: creating device {m.name} needs root") from exc
    _chown(target, attrs.owner)
    os.chmod(target, attrs.mode)
    os.utime(target, ns=(attrs.mtime_ns, attrs.mtime_ns), follow_symlinks=False)
