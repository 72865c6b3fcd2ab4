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


def kind_of(mode: int) -> str | None:
    """Map a stat mode to a copyable kind, or None for sockets, fifos and devices."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None


def walk_source(base: str, relpath: str, ignore: IgnoreRules | None,
                seen: set[str] | None = None) -> Iterator[Entry]:
    """Entries below a context dir, parents first, sorted, without following symlinks.

    Sockets, fifos and devices are skipped: a build context may hold them (agent sockets)
    and Docker never copies them usefully. `seen` collects every dir listed. The walk is
    iterative and by fds (dirstack), so any depth works.
    """
    rules = ignore or IgnoreRules()
    top = os.path.join(base, relpath)
    if seen is not None:
        seen.add(os.path.normpath(os.path.join(top, "")))
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # followed, as scandir did
    with dirstack.DirStack(fd) as stack:
        yield from _walk(dirstack.Walk(stack, after=True), top, relpath, rules, seen)


def _walk(walker: dirstack.Walk, top: str, start: str, ignore: IgnoreRules,
          seen: set[str] | None) -> Iterator[Entry]:
    """The worker of walk_source. An excluded dir is held back (`held`, a stack of the
    excluded dirs the walk stands in) and yielded only once something below it is."""
    held: list[Entry] = []
    for item in walker:
        if item.after:
            if held and held[-1].relpath == item.rel:
                held.pop()  # nothing re-included below it: it stays out
            continue
        kind = kind_of(item.st.st_mode)
        if kind is None:
            continue
        entry = Entry(item.rel, kind, item.st)
        excluded = ignore.ignored(_ctx_join(start, item.rel))
        if kind == "dir":
            if excluded and not ignore.has_exceptions:
                walker.prune()
                continue
            if seen is not None:
                seen.add(os.path.normpath(os.path.join(top, item.rel)))
            if excluded:
                held.append(entry)  # an excluded dir appears only to hold a `!` descendant
                continue
        elif excluded:
            continue
        yield from held
        held.clear()
        yield entry


def _ctx_join(start: str, rel: str) -> str:
    """A path relative to the context root, from a source dir and a path below it."""
    return rel if start in ("", ".") else f"{start}/{rel}"
