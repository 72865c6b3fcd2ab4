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
import stat
from dataclasses import dataclass, field, replace

from minibuild.build.addarchive import extract, is_tar
from minibuild.build.context import Source
from minibuild.build.copymeter import CopyMeter
from minibuild.build.rootwriter import (ROOT_OWNER, Attrs, Job, Reused, ReuseMismatch,
                                        claim_reused, ensure_dir, file_target, put_dir, put_file,
                                        put_symlink, set_dir_times)
from minibuild.build.treewalk import Excluding, walk_source
from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.dockerfile.filemode import parse_mode
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
    chmod: str | None  # --chmod value: octal or symbolic (filemode.py)
    unpack_archives: bool  # ADD: a local tar (any compression) is extracted into dest
    ignore: IgnoreRules | None  # skips excluded files while walking a source dir
    reuse: Reused | None = None  # files already in place (hard links made before the mount)
    exclude: tuple[str, ...] = ()  # --exclude patterns, matched below the destination
    parents: bool = False  # COPY --parents: sources land at their `name` paths below dest
    keep_owner: bool = False  # COPY --from: entries keep their uid/gid unless --chown
    keyword: str | None = None  # COPY or ADD, for messages (default: ADD when unpacking)
    meter: CopyMeter | None = field(default=None, compare=False)  # bytes written, for progress


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
    want_dir = want_dir or plan.parents  # BuildKit copies --parents into dest as a dir
    count = len(plan.sources) + len(plan.inline)
    if count == 0:
        raise BuildError(f"{verb} failed: no source files were specified")
    if count > 1 and not want_dir and not _all_archives(plan, context):
        raise BuildError(f"When using {verb} with more than one source file, the destination "
                         f"must be a directory and end with a / (got {plan.dest!r})")
    chmod = parse_mode(plan.chmod) if plan.chmod is not None else None
    job = Job(root, context, _owner(plan.chown, root), chmod,
              plan.ignore, plan.unpack_archives, verb, plan.chown is not None, plan.reuse,
              IgnoreRules.of(plan.exclude) if plan.exclude else None, plan.keep_owner,
              plan.meter)
    with job.src, job.dst:  # the fds pinned for paths past PATH_MAX are closed at the end
        for source in plan.sources:
            _copy_source(job, source, dest, want_dir)
    for name, content in plan.inline:
        target = file_target(job, dest, want_dir, name)
        mode = job.mode_of(stat.S_IFREG | 0o644)  # BuildKit writes heredocs 0644
        # mtime 0 keeps heredoc layers identical from one build to the next.
        put_file(job, target, io.BytesIO(content), Attrs(mode, job.owner, 0))
    if job.reuse is not None and len(job.claimed) != len(job.reuse.files):
        missed = sorted(set(job.reuse.files) - job.claimed)
        raise ReuseMismatch(f"{verb}: {len(missed)} reused files were not reached, e.g. {missed[0]}")


def _all_archives(plan: CopyPlan, context: str) -> bool:
    """True for an ADD whose sources are all local archives: each is unpacked into dest, a dir
    whether or not it ends with "/" (`ADD *.tar /dest`, as BuildKit takes it)."""
    return (plan.unpack_archives and not plan.inline and all(
        s.kind == "file" and is_tar(os.path.join(context, s.relpath)) for s in plan.sources))


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


def _copy_one(job: Job, source: Source, dest: str, want_dir: bool) -> None:
    """Copy (or, for ADD, maybe unpack) one file or kept symlink."""
    path = os.path.join(job.context, source.relpath)
    if job.unpack and source.kind == "file" and is_tar(path):
        dest_host, _ = ensure_dir(job, dest)
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


def _copy_source(job: Job, source: Source, dest: str, want_dir: bool) -> None:
    """One selected source: a dir's contents, or a file or link; with --parents, below dest at
    its path, the dirs above it made first (only when something is copied, as BuildKit)."""
    if job.exclude is not None and (source.base or source.kind != "dir") \
            and job.exclude.ignored(source.dest_name):
        return  # a dir's own name is matched only with --parents: its contents land in dest
    if not source.base:
        if source.kind == "dir":
            _copy_tree(job, source, dest)
        else:
            _copy_one(job, source, dest, want_dir)
        return
    _make_parents(job, source, dest)
    if source.kind == "dir":
        _copy_tree(job, source, posixpath.join(dest, source.name))
    else:  # into the dir made for it, resolved in the root
        parent, name = posixpath.split(source.name)
        _copy_one(job, replace(source, name=name), posixpath.join(dest, parent), True)


def _make_parents(job: Job, source: Source, dest: str) -> None:
    """COPY --parents: the dirs between dest and a source, made as copies of the context's
    (mode, --chown owner, mtime), as fsutil's createParentDirs does; existing ones are kept."""
    ensure_dir(job, dest)
    stamps: list[tuple[str, int]] = []
    parts = posixpath.dirname(source.name).split("/") if "/" in source.name else []
    for i in range(1, len(parts) + 1):
        below = "/".join(parts[:i])
        st = os.stat(os.path.join(job.context, source.base, below))
        host = resolve_in_root(job.root, posixpath.join(dest, below))
        if not os.path.lexists(host):
            put_dir(job, host, job.attrs(st), job.root)
            stamps.append((host, st.st_mtime_ns))
    set_dir_times(stamps)


def _filter(job: Job, source: Source) -> IgnoreRules | Excluding | None:
    """What a walk of this source skips: .dockerignore, and --exclude below the destination."""
    if job.exclude is None:
        return job.ignore
    prefix = source.name if source.base and source.name != "." else ""
    return Excluding(job.ignore or IgnoreRules(), job.exclude, source.relpath, prefix)


def _copy_tree(job: Job, source: Source, dest: str) -> None:
    """Copy the contents of a context dir into the image dir dest (at any depth: paths past
    PATH_MAX go through the job's LongPaths)."""
    top, created = ensure_dir(job, dest)
    base = os.path.join(job.context, source.relpath)
    stamps: list[tuple[str, int]] = []
    if created:
        st = os.stat(base)
        os.chmod(top, job.attrs(st).mode)
        stamps.append((top, st.st_mtime_ns))
    above = [("", top)]  # (relpath, host dir) from the source dir down to the current parent
    for entry in walk_source(job.context, source.relpath, _filter(job, source)):
        parent, name = posixpath.split(entry.relpath)
        while above[-1][0] != parent:  # the walk goes parents first: only ancestors are kept
            above.pop()
        target = os.path.join(above[-1][1], name)
        attrs = job.attrs(entry.stat)
        if entry.kind == "dir":
            host, stamped = put_dir(job, target, attrs, job.root)
            above.append((entry.relpath, host))
            if stamped:
                stamps.append((host, attrs.mtime_ns))
        elif entry.kind == "symlink":
            fd, rest = job.src.split(os.path.join(base, entry.relpath))
            put_symlink(job, target, os.readlink(rest, dir_fd=fd), attrs)
        elif not claim_reused(job, target, source_key(source.relpath, entry.relpath), attrs,
                              entry.stat.st_size):
            fd, rest = job.src.split(os.path.join(base, entry.relpath))
            with open(os.open(rest, os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd), "rb") as src:
                put_file(job, target, src, attrs)
    set_dir_times(stamps, job.dst)
