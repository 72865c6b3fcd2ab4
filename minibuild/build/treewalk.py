"""Walking a source tree of the build context: parents first, sorted, symlinks kept as links,
.dockerignore applied, sockets, fifos and devices skipped. COPY, the context hash, COPY reuse and
RUN --mount binds all walk the same way."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from minibuild.dockerfile.dockerignore import IgnoreRules


@dataclass(frozen=True)
class Entry:
    """One path met while walking a source directory (relative to that directory)."""

    relpath: str
    kind: str  # "file" | "dir" | "symlink"
    stat: os.stat_result


@dataclass(frozen=True)
class Excluding:
    """A source dir's filter: the .dockerignore (context paths) and COPY --exclude patterns,
    which match a path as it lands below the destination (`prefix` + the path below `start`):
    BuildKit matches them relative to the copied dir (fsutil's ExcludePatterns)."""

    ignore: IgnoreRules
    exclude: IgnoreRules
    start: str  # the source dir, context-relative
    prefix: str = ""  # where that dir lands below the destination ("" for the destination)

    @property
    def has_exceptions(self) -> bool:
        """True when a `!` pattern may re-include something below an excluded dir."""
        return self.ignore.has_exceptions or self.exclude.has_exceptions

    def ignored(self, ctx_path: str) -> bool:
        """True when the context path is ignored or excluded."""
        if self.ignore.ignored(ctx_path):
            return True
        below = ctx_path if self.start in ("", ".") else ctx_path[len(self.start) + 1:]
        return self.exclude.ignored(f"{self.prefix}/{below}" if self.prefix else below)


def kind_of(mode: int) -> str | None:
    """Map a stat mode to a copyable kind, or None for sockets, fifos and devices."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None


def walk_source(base: str, relpath: str, ignore: IgnoreRules | Excluding | None,
                seen: set[str] | None = None) -> Iterator[Entry]:
    """Entries below a context dir, parents first, sorted, without following symlinks.

    Sockets, fifos and devices are skipped: a build context may hold them (agent sockets)
    and Docker never copies them usefully. `seen` collects every dir listed.
    """
    yield from _walk(base, relpath, "", ignore or IgnoreRules(), seen)


def _walk(base: str, start: str, rel: str, ignore: IgnoreRules | Excluding,
          seen: set[str] | None) -> Iterator[Entry]:
    """Recursive worker of walk_source."""
    path = os.path.join(base, start, rel)
    if seen is not None:
        seen.add(os.path.normpath(path))
    with os.scandir(path) as it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        crel = f"{rel}/{child.name}" if rel else child.name
        st = child.stat(follow_symlinks=False)
        kind = kind_of(st.st_mode)
        if kind is None:
            continue
        excluded = ignore.ignored(_ctx_join(start, crel))
        if kind != "dir":
            if not excluded:
                yield Entry(crel, kind, st)
            continue
        if excluded and not ignore.has_exceptions:
            continue
        inner = _walk(base, start, crel, ignore, seen)
        if excluded:
            # An excluded dir appears only to hold a re-included (`!`) descendant.
            kept = list(inner)
            if not kept:
                continue
            inner = iter(kept)
        yield Entry(crel, "dir", st)
        yield from inner


def _ctx_join(start: str, rel: str) -> str:
    """A path relative to the context root, from a source dir and a path below it."""
    return rel if start in ("", ".") else f"{start}/{rel}"
