"""COPY/ADD into an image root: Docker's destination rules, ownership and modes.

In production `apply_copy` runs in a child that did chdir(context) then chroot(merged), with
root="/". Every image path still goes through `resolve_in_root`, so unit tests can point `root`
at a plain directory and get the same symlink behaviour a chroot gives. Writing is
rootwriter.py's, unpacking an ADD archive addarchive.py's.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
from dataclasses import dataclass

from minibuild.build.addarchive import extract, is_tar
from minibuild.build.context import Source
from minibuild.build.rootwriter import (ROOT_OWNER, Attrs, Job, Reused, ReuseMismatch,
                                        claim_reused, ensure_dir, file_target, put_dir, put_file,
                                        put_symlink, set_dir_times)
from minibuild.build.treewalk import walk_source
from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.errors import BuildError, MinibuildError
from minibuild.fs.rootpath import resolve_in_root
from minibuild.fs.users import resolve_user


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
    keyword: str | None = None  # COPY or ADD, for messages (default: ADD when unpacking)


def source_key(relpath: str, below: str = "") -> str:
    """The context path of a source entry: the source's relpath, then the path below it."""
    if not below:
        return relpath
    return below if relpath in ("", ".") else f"{relpath}/{below}"


def destination(plan: CopyPlan) -> tuple[str, bool]:
    """The absolute image path of the destination and whether it must be a directory."""
    d = plan.dest
    want_dir = d.endswith("/") or posixpath.basename(d) in (".", "..") or d == ""
    joined = d if d.startswith("/") else posixpath.join(plan.workdir or "/", d)
    return posixpath.normpath("/" + joined.lstrip("/")), want_dir


def apply_copy(plan: CopyPlan, root: str = "/", context: str = ".") -> None:
    """Carry out one COPY/ADD: read sources under `context`, write under image `root`."""
    verb = plan.keyword or ("ADD" if plan.unpack_archives else "COPY")
    dest, want_dir = destination(plan)
    count = len(plan.sources) + len(plan.inline)
    if count == 0:
        raise BuildError(f"{verb} failed: no source files were specified")
    if count > 1 and not want_dir:
        raise BuildError(f"When using {verb} with more than one source file, the destination "
                         f"must be a directory and end with a / (got {plan.dest!r})")
    job = Job(root, context, _owner(plan.chown, root), _parse_chmod(plan.chmod),
              plan.ignore, plan.unpack_archives, verb, plan.chown is not None, plan.reuse)
    for source in plan.sources:
        if source.kind == "dir":
            _copy_tree(job, source, dest)
        else:
            _copy_one(job, source, dest, want_dir)
    for name, content in plan.inline:
        target = file_target(job, dest, want_dir, name)
        mode = job.mode if job.mode is not None else 0o644
        # mtime 0 keeps heredoc layers identical from one build to the next.
        put_file(job, target, io.BytesIO(content), Attrs(mode, job.owner, 0))
    if job.reuse is not None and len(job.claimed) != len(job.reuse.files):
        missed = sorted(set(job.reuse.files) - job.claimed)
        raise ReuseMismatch(f"{verb}: {len(missed)} reused files were not reached, e.g. {missed[0]}")


def _owner(spec: str | None, root: str) -> tuple[int, int]:
    """uid/gid for --chown: numbers as given (gid defaults to uid), names via the image."""
    if spec is None:
        return ROOT_OWNER
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


def _copy_one(job: Job, source: Source, dest: str, want_dir: bool) -> None:
    """Copy (or, for ADD, maybe unpack) one file or kept symlink."""
    path = os.path.join(job.context, source.relpath)
    if job.unpack and source.kind == "file" and is_tar(path):
        dest_host, _ = ensure_dir(job, dest, job.owner)
        extract(job, path, dest_host)
        return
    target = file_target(job, dest, want_dir, source.dest_name)
    st = os.lstat(path)
    if source.kind == "symlink":
        put_symlink(job, target, os.readlink(path), job.attrs(st))
        return
    attrs = job.attrs(st)
    if claim_reused(job, target, source.relpath, attrs, st.st_size):
        return
    with open(path, "rb") as src:
        put_file(job, target, src, attrs)


def _copy_tree(job: Job, source: Source, dest: str) -> None:
    """Copy the contents of a context dir into the image dir dest."""
    top, created = ensure_dir(job, dest, job.owner)
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
            dirs[entry.relpath], stamped = put_dir(job, target, attrs, job.root)
            if stamped:
                stamps.append((dirs[entry.relpath], attrs.mtime_ns))
        elif entry.kind == "symlink":
            put_symlink(job, target, os.readlink(os.path.join(base, entry.relpath)), attrs)
        elif not claim_reused(job, target, source_key(source.relpath, entry.relpath), attrs,
                              entry.stat.st_size):
            with open(os.path.join(base, entry.relpath), "rb") as src:
                put_file(job, target, src, attrs)
    set_dir_times(stamps)
