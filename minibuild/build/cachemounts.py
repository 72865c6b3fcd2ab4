"""RUN cache mounts on the host: their dirs in the store, the flocks of their sharing modes.

Cache mounts live in ROOT/cache/mounts/<sha256 of the id>/ and persist across builds (and
`--no-cache`); `prune --cache` drops them (forget_cache_mounts). Sharing: `shared` never waits
(it holds a shared flock when it can, so `locked` waits for it); `locked` waits for an exclusive
flock, one RUN at a time, and says so; `private` takes the exclusive flock when it is free, and
otherwise gets a fresh dir for this step alone, thrown away after it.

A cache with `from=` is BuildKit's snapshot on top of that stage or image (mounts.go
getRefCacheDir: keyed by id and the from snapshot): a new one starts as a copy of its files,
and the target shows its `source=` path.
"""

from __future__ import annotations

import os
import secrets as tokens
from collections.abc import Callable, Sequence
from hashlib import sha256
from pathlib import Path

from minibuild.dockerfile.runmount import CacheMount
from minibuild.errors import BuildError
from minibuild.fs.files import remove_tree
from minibuild.fs.lock import FileLock
from minibuild.fs.rootpath import resolve_in_root
from minibuild.layer.squash import squash_layers
from minibuild.sandbox.stepmounts import Bind
from minibuild.store.paths import StorePaths

# (cache id, the mount, the from= layer dirs top first or None)
Wanted = tuple[str, CacheMount, "tuple[Path, ...] | None"]


def cache_mount_dir(root: Path) -> Path:
    """Where a store keeps its cache mounts."""
    return StorePaths.at(root).cache_mounts


def forget_cache_mounts(root: Path) -> int:
    """Delete every cache mount of a store (for `prune --cache`, under the exclusive gc lock:
    no build holds one); how many there were."""
    directory = cache_mount_dir(root)
    try:
        count = sum(1 for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return 0
    remove_tree(directory)
    return count


class CacheDirs:
    """The cache dirs of one store (None: no store, so no cache mounts)."""

    def __init__(self, root: Path | None, scratch: Callable[[str], Path],
                 notify: Callable[[str], None]) -> None:
        self.root = root
        self.scratch = scratch
        self.notify = notify  # a line for the step's output (waiting on a locked cache)

    def take(self, wanted: Sequence[Wanted], locks: list[FileLock],
             scratch: list[Path]) -> dict[str, Path]:
        """The dir of each cache id, its flock taken (in one order: two builds never deadlock)."""
        sharing: dict[str, str] = {}
        first: dict[str, Wanted] = {}
        rank = {"shared": 0, "private": 1, "locked": 2}
        for item in wanted:
            cid, mount = item[0], item[1]
            first.setdefault(cid, item)
            if rank[mount.sharing] >= rank.get(sharing.get(cid, "shared"), 0):
                sharing[cid] = mount.sharing
        if first and self.root is None:
            raise BuildError("RUN --mount=type=cache needs a store to keep the cache in")
        dirs: dict[str, Path] = {}
        for cid in sorted(first, key=_hash):
            _, mount, lowers = first[cid]
            lock = self._lock(cid, mount, sharing[cid])
            if lock is not None:
                locks.append(lock)
            if lock is not None or sharing[cid] == "shared":  # shared goes on without waiting
                dirs[cid] = self._dir(cid, mount, lowers)
            else:  # private and in use: a dir of its own, for this step only
                path = self.scratch("cache")
                scratch.append(path)
                dirs[cid] = _new_cache(path / "dir", mount, lowers)
        return dirs

    def _lock(self, cid: str, mount: CacheMount, sharing: str) -> FileLock | None:
        """The flock `sharing` asks for (only `locked` waits, saying so first); None when the
        cache is in use."""
        assert self.root is not None
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{_hash(cid)}.lock"
        try:
            return FileLock(path, exclusive=sharing != "shared", wait=False)
        except BlockingIOError:
            if sharing != "locked":
                return None
        self.notify(f"waiting for cache mount {mount.id} (locked by another build)")
        return FileLock(path, exclusive=True, wait=True)

    def _dir(self, cid: str, mount: CacheMount, lowers: tuple[Path, ...] | None) -> Path:
        """The persistent dir of a cache id, made (mode, uid, gid; or from= seeded) the first time."""
        assert self.root is not None
        path = self.root / _hash(cid)
        if path.is_dir():
            return path
        temporary = self.root / f".new-{_hash(cid)}-{tokens.token_hex(4)}"
        try:
            _new_cache(temporary, mount, lowers)
        except BaseException:  # never leave a half-made dir among the caches
            remove_tree(temporary)
            raise
        try:
            os.rename(temporary, path)
        except OSError:  # another build made it meanwhile
            remove_tree(temporary)
        return path


def cache_bind(mount: CacheMount, cache: Path) -> Bind:
    """The cache dir, or its source= path (resolved inside it: a symlink of the copied tree
    cannot lead out), bound on the target."""
    source = resolve_in_root(str(cache), mount.source) if mount.source else str(cache)
    if not os.path.exists(source):
        raise BuildError(f"RUN --mount=type=cache,from={mount.from_}: source={mount.source} "
                         "does not exist there")
    return Bind(mount.target, source, mount.readonly, not os.path.isdir(source),
                name=f"cache {mount.id}")


def _hash(cache_id: str) -> str:
    return sha256(cache_id.encode()).hexdigest()[:32]


def _new_cache(path: Path, mount: CacheMount, lowers: tuple[Path, ...] | None) -> Path:
    """A new cache dir: empty with the mount's mode and owner, or with from= a copy of that
    stage's or image's tree (its layers merged as overlay shows them)."""
    path.mkdir()
    if lowers is None:
        os.chown(path, mount.uid, mount.gid)
        os.chmod(path, mount.mode)
    else:
        squash_layers(list(reversed(lowers)), [], path)
    return path
