"""The host side of a RUN's mounts: for one execution, the cache dirs and their locks
(cachemounts.py), the secret values and the overlay views of the context or a stage, all undone
when it ends.

A bind never exposes the source itself: it is the lower dir of an overlay view with a scratch
upper, so a `rw` bind's writes go to scratch, and what .dockerignore excludes is whited out
(it is not in the step's cache key, so it must not be visible either).
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibuild.layer import layerpath
from minibuild.build.context import BuildContext, Source
from minibuild.build.treewalk import walk_source
from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.errors import BuildError
from minibuild.sandbox.overlay import OverlayOptions, distinct_lowers, make_overlay_dirs, mount_extra
from minibuild.dockerfile.runmount import BindMount, CacheMount, RunMount, SecretMount, TmpfsMount
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.sandbox.stepmounts import Bind, SecretFile, StepMount, Tmpfs
from minibuild.fs import dirstack
from minibuild.fs.files import remove_tree
from minibuild.fs.lock import FileLock
from minibuild.build.cachemounts import CacheDirs, cache_bind


@dataclass(frozen=True)
class Prepared:
    """One RUN mount and what it reads, resolved when the step is prepared."""

    mount: RunMount
    context: Source | None = None  # a bind of the build context: the selected source
    content: str | None = None  # ... and the content key of what it selects
    lowers: tuple[Path, ...] | None = None  # a bind from a stage or image: its layer dirs, top first
    from_key: str | None = None  # ... and what identifies their content

    def key(self) -> dict[str, Any]:
        """The mount's part of the step's cache key: its spec and what it reads, never the
        content of a cache or a secret."""
        key = self.mount.key()
        if isinstance(self.mount, BindMount):
            key["from"] = self.from_key or "context"
            key["content"] = self.content
        elif isinstance(self.mount, CacheMount) and self.from_key is not None:
            key["from"] = self.from_key
        return key

    @property
    def cache_id(self) -> str:
        """Which cache a cache mount uses: its id, and with from= what that names (BuildKit
        keys the cache by id and the from snapshot: a new stage content, a new cache)."""
        assert isinstance(self.mount, CacheMount)
        return self.mount.id if self.from_key is None else f"{self.mount.id}:{self.from_key}"


class MountHost:
    """What a RUN's mounts take from the host: the store's cache dirs, the build's secrets,
    the build context and scratch dirs."""

    def __init__(self, cache_root: Path | None, secrets: Mapping[str, SecretSource],
                 context: BuildContext, scratch: Callable[[str], Path],
                 environ: Mapping[str, str] = os.environ,
                 notify: Callable[[str], None] = lambda line: None) -> None:
        self.cache_root = cache_root
        self.caches = CacheDirs(cache_root, scratch, notify)
        self.secrets = secrets
        self.context = context
        self.scratch = scratch
        self.environ = environ

    @contextmanager
    def setup(self, prepared: Sequence[Prepared]) -> Iterator[tuple[tuple[StepMount, ...],
                                                                    tuple[tuple[str, str], ...]]]:
        """The sandbox mounts and the secret env variables of one execution; on exit the
        locks are released and the scratch dirs removed."""
        locks: list[FileLock] = []
        scratch: list[Path] = []
        try:
            caches = self.caches.take([(p.cache_id, p.mount, p.lowers) for p in prepared
                                       if isinstance(p.mount, CacheMount)], locks, scratch)
            mounts: list[StepMount] = []
            env: list[tuple[str, str]] = []
            for item in prepared:
                mount = item.mount
                if isinstance(mount, CacheMount):
                    mounts.append(cache_bind(mount, caches[item.cache_id]))
                elif isinstance(mount, TmpfsMount):
                    mounts.append(Tmpfs(mount.target, mount.size))
                elif isinstance(mount, SecretMount):
                    mounts.extend(self._secret(mount, env, scratch))
                else:
                    mounts.append(self._bind(item, scratch))
            yield tuple(mounts), tuple(env)
        finally:
            for lock in locks:
                lock.release()
            for path in scratch:
                remove_tree(path)

    # -- cache -------------------------------------------------------------------------------

    # -- secrets -----------------------------------------------------------------------------

    def _secret(self, mount: SecretMount, env: list[tuple[str, str]],
                scratch: list[Path]) -> list[StepMount]:
        """The secret's file mount and env variable; nothing when it is missing and optional."""
        value = self._secret_value(mount)
        if value is None:
            return []
        if mount.env is not None:
            if b"\0" in value:
                raise BuildError(f"secret {mount.id} holds a NUL byte: it cannot be the "
                                 f"environment variable {mount.env}")
            env.append((mount.env, os.fsdecode(value)))
        if mount.target is None:
            return []
        staging = self.scratch("secrets")
        scratch.append(staging)
        return [SecretFile(mount.target, mount.id, value, str(staging), mount.mode, mount.uid,
                           mount.gid)]

    def _secret_value(self, mount: SecretMount) -> bytes | None:
        """The value of a secret, read now; None when the build was not given it."""
        source = self.secrets.get(mount.id)
        value = None
        if source is not None and source.path is not None:
            try:
                with open(source.path, "rb") as f:
                    value = f.read()
            except OSError as exc:
                raise BuildError(f"secret {mount.id}: cannot read {source.path}: "
                                 f"{exc.strerror}") from None
        elif source is not None and source.env is not None:
            text = self.environ.get(source.env)
            value = None if text is None else os.fsencode(text)
        if value is None and mount.required:
            how = f"--secret id={mount.id},src=FILE"
            missing = f"it is not in {source.describe()}" if source else f"the build has no {how}"
            raise BuildError(f"RUN --mount=type=secret,id={mount.id} is required, but {missing}")
        return value

    # -- binds -------------------------------------------------------------------------------

    def _bind(self, item: Prepared, scratch: list[Path]) -> Bind:
        """A bind of the context or of a stage/image, through an overlay view."""
        mount = item.mount
        assert isinstance(mount, BindMount)
        view = self.scratch("view")
        scratch.append(view)
        if item.context is not None:
            source = item.context
            path = self.context.root / source.relpath
            hidden: list[str] = []
            if source.kind == "dir":
                lower, inside, is_file = path, "/", False
                if self.context.ignore.patterns:
                    hidden = _excluded(str(self.context.root), source.relpath, self.context.ignore)
            else:
                lower, inside, is_file = path.parent, path.name, True
            lowers, name = (lower,), f"context {mount.source or '.'}"
        else:
            assert item.lowers is not None
            lowers = item.lowers or (_empty(view / "empty"),)
            found = layerpath.resolve(lowers, mount.source or "/")
            name = f"{mount.from_}:{mount.source or '/'}"
            if not found.exists:
                raise BuildError(f"RUN --mount from={mount.from_}: {mount.source} does not "
                                 f"exist in {mount.from_}")
            inside, is_file, hidden = found.path, not found.is_dir(), []
        dirs = make_overlay_dirs(view)
        _white_out(Path(lowers[0]), dirs[0], hidden)
        options = OverlayOptions(distinct_lowers([str(p) for p in lowers]), str(dirs[0]), str(dirs[1]),
                                 mount_extra())
        return Bind(mount.target, inside, not mount.readwrite, is_file, options, str(dirs[2]), name)


def _empty(path: Path) -> Path:
    """An empty lower dir (overlay needs one; a stage FROM scratch with no layer has none)."""
    path.mkdir()
    return path


def _white_out(lower: Path, upper: Path, hidden: Sequence[str]) -> None:
    """Hide these paths of the lower dir with whiteouts in the (empty) upper dir; every dir
    of the upper takes the attributes of the lower dir it covers. By fds: any depth."""
    for rel in hidden:
        *dirs, name = rel.split("/")
        fd = dirstack.open_dir_at(upper)
        try:
            for part in dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                inner = dirstack.open_dir_at(part, fd)
                os.close(fd)
                fd = inner
            os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=fd)
        finally:
            os.close(fd)
    if hidden:
        for entry in dirstack.walk(upper, after=True):  # deepest first: a child moves its parent's mtime
            if entry.after:
                _like_at(entry.dir_fd, entry.name, os.path.join(lower, entry.rel))
    _like_at(None, os.fspath(upper), os.fspath(lower))


def _like_at(dir_fd: int | None, name: str, model: str) -> None:
    """Give an upper dir the mode, owner and times of the lower dir it covers (overlay shows
    an upper dir's attributes)."""
    with dirstack.shortened(model) as short:
        st = os.stat(short)
    fd = dirstack.open_dir_at(name, dir_fd)
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def _excluded(root: str, start: str, ignore: IgnoreRules) -> list[str]:
    """The topmost paths below the context dir `start` (relative to it) a view must hide:
    what .dockerignore excludes (an excluded dir stays only for what `!` brings back), and
    sockets, fifos and devices, which are never part of a context."""
    hidden: list[str] = []
    for _ in walk_source(root, start, ignore, dropped=hidden):
        pass
    return hidden
