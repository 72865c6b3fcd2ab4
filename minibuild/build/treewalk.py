"""Walking a source tree of the build context: parents first, sorted, symlinks kept as links,
.dockerignore applied, sockets, fifos and devices skipped. COPY, the context hash, COPY reuse and
RUN --mount binds all walk the same way."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.fs import dirstack


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
                seen: set[str] | None = None, dropped: list[str] | None = None) -> Iterator[Entry]:
    """Entries below a context dir, parents first, sorted, without following symlinks.

    Sockets, fifos and devices are skipped: a build context may hold them (agent sockets)
    and Docker never copies them usefully. `seen` collects every dir listed, `dropped` the
    topmost paths left out (what a view of the dir must hide). The walk is iterative and by
    fds (dirstack), so any depth works.
    """
    rules = ignore or IgnoreRules()
    top = os.path.join(base, relpath)
    if seen is not None:
        seen.add(os.path.normpath(os.path.join(top, "")))
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # followed, as scandir did
    with dirstack.DirStack(fd) as stack:
        yield from _walk(dirstack.Walk(stack, after=True), top, relpath, rules, seen,
                         [] if dropped is None else dropped)


def _walk(walker: dirstack.Walk, top: str, start: str, ignore: IgnoreRules | Excluding,
          seen: set[str] | None, dropped: list[str]) -> Iterator[Entry]:
    """The worker of walk_source. An excluded dir is held back (`held`: the excluded dirs the
    walk stands in, each with where `dropped` stood) and yielded only once something below it
    is; otherwise it is dropped whole, in place of what was dropped below it."""
    held: list[tuple[Entry, int]] = []
    for item in walker:
        if item.after:
            if held and held[-1][0].relpath == item.rel:
                del dropped[held.pop()[1]:]  # nothing re-included below it: it stays out
                dropped.append(item.rel)
            continue
        kind = kind_of(item.st.st_mode)
        excluded = kind is not None and ignore.ignored(_ctx_join(start, item.rel))
        if kind is None or (excluded and (kind != "dir" or not ignore.has_exceptions)):
            walker.prune()
            dropped.append(item.rel)
            continue
        entry = Entry(item.rel, kind, item.st)
        if kind == "dir":
            if seen is not None:
                seen.add(os.path.normpath(os.path.join(top, item.rel)))
            if excluded:
                held.append((entry, len(dropped)))  # shown only to hold a `!` descendant
                continue
        yield from (dir_entry for dir_entry, _ in held)
        held.clear()
        yield entry


def _ctx_join(start: str, rel: str) -> str:
    """A path relative to the context root, from a source dir and a path below it."""
    return rel if start in ("", ".") else f"{start}/{rel}"
