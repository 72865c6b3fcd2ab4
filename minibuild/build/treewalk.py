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
    and Docker never copies them usefully. `seen` collects every dir listed.
    """
    yield from _walk(base, relpath, "", ignore or IgnoreRules(), seen)


def _walk(base: str, start: str, rel: str, ignore: IgnoreRules,
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
