"""ADD's local archives: a tar (plain, gzip, bzip2, xz or zstd, judged by content, not by
name) unpacked into the destination; no member may land or point outside it."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from minibuild.build.rootwriter import (ROOT_OWNER, Attrs, Job, chown, clear, image_path, mkdirs,
                                        put_dir, put_file, put_symlink, set_dir_times, within)
from minibuild.errors import BuildError
from minibuild.fs.rootpath import resolve_in_root
from minibuild.layer import compression


@contextmanager
def _decompressed(path: str) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed when its magic number names a known compression."""
    with open(path, "rb") as raw:
        kind, reader = compression.sniff_stream(raw)
        with compression.decompressing(reader, kind) as stream:
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
    except (OSError, tarfile.HeaderError, *compression.DECODE_ERRORS):
        return False  # not an archive after all: ADD copies it as a plain file
    return True


def extract(job: Job, path: str, dest_host: str) -> None:
    """Unpack a tar into dest_host; no member may land or point outside it."""
    stamps: list[tuple[str, int]] = []
    try:
        with _decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                stamp = _extract_member(job, tf, member, dest_host)
                if stamp is not None:
                    stamps.append(stamp)
    except (tarfile.TarError, *compression.DECODE_ERRORS) as exc:
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


def _member_target(job: Job, dest_host: str, rel: str, archive: str, follow: bool) -> str:
    """The host path for a member, resolved like a chroot would and kept inside dest."""
    image = posixpath.join(image_path(job.root, dest_host), rel)
    host = resolve_in_root(job.root, image, follow_last=follow)
    if not within(host, dest_host):
        raise BuildError(f"ADD failed: archive {archive} member {rel} resolves outside "
                         f"the destination (to {image_path(job.root, host)})")
    return host


def _extract_member(job: Job, tf: tarfile.TarFile, m: tarfile.TarInfo,
                    dest_host: str) -> tuple[str, int] | None:
    """Write one member; return (dir, mtime_ns) when a dir mtime must be set at the end."""
    archive = tf.name or "archive"
    rel = _member_rel(m.name, archive)
    if rel is None:
        return None
    target = _member_target(job, dest_host, rel, archive, follow=False)
    mkdirs(job, os.path.dirname(target), ROOT_OWNER)  # dirs a tar implies: 0755 root's
    owner = job.owner if job.chown_given else (m.uid, m.gid)
    attrs = Attrs(m.mode & 0o7777, owner, int(m.mtime * 1_000_000_000))
    if m.isdir():
        host, stamped = put_dir(job, target, attrs, dest_host)
        return (host, attrs.mtime_ns) if stamped else None
    if m.issym():
        if image_path(job.root, dest_host) != "/":
            _check_symlink(rel, m.linkname, archive)
        put_symlink(job, target, m.linkname, attrs)
    elif m.islnk():
        _put_hardlink(job, dest_host, target, m.linkname, archive)
    elif m.isfile():
        src = tf.extractfile(m)
        assert src is not None  # a regular member always has a data stream
        put_file(job, target, src, attrs)
    elif m.ischr() or m.isblk() or m.isfifo():
        _put_node(job, target, m, attrs)
    return None


def _check_symlink(rel: str, link: str, archive: str) -> None:
    """Refuse a relative link that climbs out of a destination below `/`.

    Stricter than Docker, whose chrootarchive unpacks inside a chroot at the destination and
    so takes any link. Unpacked at `/`, a `..` past the top stays at `/` (a chroot's rule), so
    nothing climbs out and every link is kept, as Docker keeps `../tmp/x`. The link is data
    either way: a later member written through it is resolved inside the root and refused when
    it lands outside the destination (_member_target)."""
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


def _put_hardlink(job: Job, dest_host: str, target: str, link: str, archive: str) -> None:
    """Hard link to an earlier member of the same archive."""
    link_rel = _member_rel(link, archive)
    if link_rel is None:
        raise BuildError(f"ADD failed: archive {archive} has a hard link to its root")
    source = _member_target(job, dest_host, link_rel, archive, follow=False)
    clear(job, target)
    os.link(source, target, follow_symlinks=False)


def _put_node(job: Job, target: str, m: tarfile.TarInfo, attrs: Attrs) -> None:
    """A device node or fifo from an archive (devices need root)."""
    clear(job, target)
    if m.isfifo():
        os.mkfifo(target, 0o600)
    else:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(target, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        except PermissionError as exc:
            raise BuildError(f"ADD failed: creating device {m.name} needs root") from exc
    chown(target, attrs.owner)
    os.chmod(target, attrs.mode)
    os.utime(target, ns=(attrs.mtime_ns, attrs.mtime_ns), follow_symlinks=False)
