"""The build context: resolving COPY/ADD sources inside it and hashing what they select.

Walking a source dir is treewalk.py's, the per-file hash cache hashcache.py's, and noting what
the build saw (for the memo) sightings.py's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from minibuild.build.hashcache import HashCache
from minibuild.build.sightings import Sightings
from minibuild.build.treewalk import Entry, kind_of, walk_source
from minibuild.oci.digest import Digest
from minibuild.fs.longpath import LongPaths
from minibuild.fs.rootpath import resolve_in_root
from minibuild.dockerfile.dockerignore import IgnoreRules, glob_to_regex, has_glob, ignore_files
from minibuild.errors import BuildError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class Source:
    """One selected source, as written in the Buildfile, resolved inside the context."""

    relpath: str  # path to read inside the context, "." for the root, no leading "/"
    kind: str  # "file" | "dir" | "symlink" (a link met inside a copied dir is kept as a link)
    from_wildcard: bool
    # Name at the destination (the name as written; defaults to the basename). With
    # `COPY --parents` it is the path below the destination, e.g. "x/a.txt".
    name: str = ""
    base: str = ""  # COPY --parents: the context dir `name` is relative to (its dirs are copied)

    @property
    def dest_name(self) -> str:
        """The file name this source takes inside a destination directory."""
        return self.name or posixpath.basename(self.relpath)


@dataclass(frozen=True)
class Selection:
    """The sources of one COPY/ADD and a key over exactly the content they select."""

    sources: tuple[Source, ...]
    content_key: Digest
    files: int
    bytes: int


def is_url(text: str) -> bool:
    """True for a source with a URL scheme (`https://...`); ADD fetches http(s) and git ones
    (remoteadd.py), never through the context."""
    return _URL.match(text) is not None


class BuildContext:
    """A build context directory with its .dockerignore and a per-build hash cache.

    With `image=True` the root is an image's filesystem (`COPY --from`): no .dockerignore, and
    symlinks resolve inside the root as a chroot would instead of being refused.
    """

    def __init__(self, root: Path, *, image: bool = False, sightings: Sightings | None = None,
                 buildfile: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self.image = image
        self.ignore = IgnoreRules() if image else IgnoreRules.load(self.root, buildfile)
        self._real = os.path.realpath(self.root)
        self.hashes = HashCache()  # pipeline.py saves it between builds
        # For the build memo: what this build saw (nothing for an image: its content is
        # addressed by digest).
        self._sightings = None if image else sightings
        for ignore_file in map(str, ignore_files(self.root, buildfile) if self._sightings else ()):
            self._look(ignore_file)
            self._look(os.path.realpath(ignore_file))
            self._sightings.trace(ignore_file)

    def note_remote(self) -> None:
        """Note that the build fetched a remote source (ADD <url>): the memo cannot check it."""
        if self._sightings is not None:
            self._sightings.remote = True

    def _look(self, path: str) -> str:
        """Note a context path as read by this build; returns it."""
        if self._sightings is not None:
            self._sightings.look(path)
        return path

    def _trace(self, path: str) -> None:
        """Note the names `path` resolves through, for the build memo."""
        if self._sightings is not None:
            self._sightings.trace(path)

    def _listed(self) -> set[str] | None:
        """Where walk_source notes the dirs it lists (None: nobody watches)."""
        return self._sightings.paths if self._sightings is not None else None

    def select_sources(self, patterns: Sequence[str], *, verb: str = "COPY",
                       parents: bool = False) -> Selection:
        """Resolve sources with Docker semantics and hash the content they select."""
        return self._hash(self.resolve_sources(patterns, verb=verb, parents=parents))

    def resolve_sources(self, patterns: Sequence[str], *, verb: str = "COPY",
                        parents: bool = False) -> tuple[Source, ...]:
        """Resolve sources with Docker semantics, without reading their content.

        A wildcard that matches nothing is no error beside sources that select something
        (BuildKit's AllowEmptyWildcard); when nothing at all is selected it is.
        """
        sources: list[Source] = []
        for pattern in patterns:
            if parents:
                sources.extend(self._resolve_parents(pattern, verb))
            else:
                sources.extend(self._resolve(pattern, verb))
        if patterns and not sources:
            raise BuildError(f"{verb} failed: no source files were specified "
                             f"({' '.join(patterns)})")
        return tuple(sources)

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self, pattern: str, verb: str) -> list[Source]:
        """The sources one pattern names."""
        if is_url(pattern):
            if verb == "COPY":
                raise BuildError(f"COPY failed: source can't be a URL for COPY: {pattern} (use ADD)")
            raise BuildError(f"{verb} failed: {pattern}: only http(s) URLs and git repositories "
                             "can be fetched")
        cleaned = posixpath.normpath(pattern.lstrip("/") or ".")
        if cleaned == ".." or cleaned.startswith("../"):
            raise BuildError(f"{verb} failed: {pattern} is outside the build context")
        if has_glob(cleaned):
            return self._expand(cleaned.split("/"), pattern, verb)
        return [self._direct(cleaned, pattern, verb)]

    def _resolve_parents(self, pattern: str, verb: str) -> list[Source]:
        """COPY --parents: what `pattern` selects below its base (the part before `/./`, else
        the context root), each named by its path below that base (rsync's --relative)."""
        base, pivot, rest = pattern.partition("/./")
        if not pivot:
            base, rest = "", pattern
        rest = posixpath.normpath(rest.lstrip("/") or ".")
        if rest == ".." or rest.startswith("../"):
            raise BuildError(f"{verb} failed: {pattern} is outside the build context")
        bases = [s for s in self._resolve(base or ".", verb) if s.kind == "dir"]
        found: list[Source] = []
        for b in bases:
            if not has_glob(rest):
                source = self._direct(_ctx_join(b.relpath, rest), pattern, verb)
                found.append(replace(source, name=rest, base=b.relpath))
            else:
                found.extend(self._parents_matches(b.relpath, rest, pattern, verb))
        return found

    def _parents_matches(self, base: str, rest: str, pattern: str, verb: str) -> list[Source]:
        """Entries below `base` whose path from it matches the wildcard `rest` (`**` spans dirs);
        a matched dir brings everything below it, a matched link stays a link."""
        regex = re.compile(glob_to_regex(rest, double_star=True) + r"\Z", re.DOTALL)
        parts = rest.split("/")
        literal = "/".join(itertools.takewhile(lambda p: not has_glob(p), parts))
        start = _ctx_join(base, literal)
        if not os.path.isdir(self._look(os.path.join(self.root, start))):
            return []
        self._inside(start, pattern, verb)  # the walk follows `start`: a link out is refused
        found: list[Source] = []
        taken: list[str] = []
        for entry in walk_source(str(self.root), start, self.ignore, self._listed()):
            rel = f"{literal}/{entry.relpath}" if literal else entry.relpath
            if any(rel.startswith(t + "/") for t in taken) or not regex.match(rel):
                continue
            found.append(Source(_ctx_join(start, entry.relpath), entry.kind, True, rel, base))
            if entry.kind == "dir":
                taken.append(rel)
        return found

    def _direct(self, cleaned: str, pattern: str, verb: str) -> Source:
        """A source named without wildcards: symlinks followed, but only inside the context."""
        if self.ignore.ignored(cleaned) and not self._has_kept_children(cleaned):
            raise _not_found(pattern, verb)
        real = self._inside(cleaned, pattern, verb)
        rel = os.path.relpath(real, self._real)
        if rel != cleaned and self.ignore.ignored(rel):
            raise _not_found(pattern, verb)
        kind = kind_of(os.stat(real).st_mode)
        if kind is None:
            raise BuildError(f"{verb} failed: {pattern} is not a regular file or directory")
        name = "." if cleaned == "." else posixpath.basename(cleaned)
        return Source(rel, kind, False, name)

    def _has_kept_children(self, cleaned: str) -> bool:
        """True when an excluded directory still holds re-included files."""
        full = os.path.join(self.root, cleaned)
        if not self.ignore.has_exceptions or not os.path.isdir(full):
            return False
        return any(True for _ in walk_source(str(self.root), cleaned, self.ignore, self._listed()))

    def _inside(self, cleaned: str, pattern: str, verb: str) -> str:
        """The real path of a context path; refuse it when a symlink leads out."""
        full = self._look(os.path.join(self.root, cleaned))
        self._trace(full)
        if self.image:  # an image's absolute links point inside the image
            full = resolve_in_root(self._real, cleaned)
        if not os.path.lexists(full):
            raise _not_found(pattern, verb)
        real = self._look(os.path.realpath(full))
        if real != self._real and not real.startswith(self._real.rstrip("/") + "/"):
            raise BuildError(f"{verb} failed: {pattern} is outside the build context "
                             f"(a symlink points to {real})")
        if not os.path.exists(real):
            raise _not_found(pattern, verb)
        return real

    def _expand(self, parts: list[str], pattern: str, verb: str) -> list[Source]:
        """Match a wildcard pattern component by component, like Go's filepath.Glob."""
        dirs = ["."]
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            regex = re.compile(glob_to_regex(part) + r"\Z", re.DOTALL) if has_glob(part) else None
            matched: list[str] = []
            for d in dirs:
                matched.extend(self._match_in(d, part, regex, pattern, verb))
            if last:
                found = (self._wild_source(rel, pattern, verb) for rel in matched)
                return [source for source in found if source is not None]
            dirs = [self._as_dir(rel, pattern, verb) for rel in matched]
            dirs = [d for d in dirs if d is not None]
        return []

    def _match_in(self, d: str, part: str, regex: re.Pattern[str] | None,
                  pattern: str, verb: str) -> list[str]:
        """Context paths in dir `d` whose name matches one pattern component."""
        full = self._look(os.path.join(self.root, d))
        if regex is None:
            names = [part.replace("\\", "")] if os.path.lexists(self._look(os.path.join(full, part))) else []
        else:
            names = sorted(n for n in os.listdir(full) if regex.match(n))
        rels = [n if d == "." else f"{d}/{n}" for n in names]
        return [r for r in rels if not self.ignore.ignored(r) or self._has_kept_children(r)]

    def _as_dir(self, rel: str, pattern: str, verb: str) -> str | None:
        """A matched intermediate component as a context dir (following inner symlinks)."""
        real = self._inside(rel, pattern, verb)
        return os.path.relpath(real, self._real) if os.path.isdir(real) else None

    def _wild_source(self, rel: str, pattern: str, verb: str) -> Source | None:
        """A wildcard match: a symlink is followed (its target's content is copied, as
        BuildKit's FollowSymlinks does), a socket, fifo or device skipped."""
        if kind_of(os.lstat(self._look(os.path.join(self.root, rel))).st_mode) is None:
            return None
        real = self._inside(rel, pattern, verb)
        kind = kind_of(os.stat(real).st_mode)
        if kind is None:
            return None
        return Source(os.path.relpath(real, self._real), kind, True, posixpath.basename(rel))

    # -- hashing ------------------------------------------------------------------------

    def _hash(self, sources: tuple[Source, ...]) -> Selection:
        """Key exactly the selected content: names, types, modes, bytes, link targets."""
        h = hashlib.sha256()
        files = size = 0
        with LongPaths() as paths:  # a context dir may be deeper than PATH_MAX
            for source in sources:
                files, size = self._hash_source(h, source, paths, files, size)
        return Selection(sources, Digest.from_hash(h), files, size)

    def _hash_source(self, h: "hashlib._Hash", source: Source, paths: LongPaths, files: int,
                     size: int) -> tuple[int, int]:
        """Feed one source into the hash; the file and byte counts with its own added."""
        _record(h, ["source", source.dest_name, source.kind, *self._parent_modes(source)])
        entries = self._entries(source)
        for entry in entries:
            data = self._entry_data(source, entry, paths)
            _record(h, [entry.relpath, entry.kind, stat.S_IMODE(entry.stat.st_mode), data])
            if entry.kind == "file":
                files += 1
                size += entry.stat.st_size
        return files, size

    def _parent_modes(self, source: Source) -> list[int]:
        """COPY --parents: the modes of the context dirs it copies above a source."""
        if not source.base or "/" not in source.name:
            return []
        parts = source.name.split("/")[:-1]
        return [stat.S_IMODE(os.stat(os.path.join(self.root, source.base, *parts[:i])).st_mode)
                for i in range(1, len(parts) + 1)]

    def _entries(self, source: Source) -> Iterator[Entry]:
        """The source itself (relpath "") then, for a dir, everything below it."""
        full = self._look(os.path.join(self.root, source.relpath))
        yield Entry("", source.kind, os.lstat(full))
        if source.kind == "dir":
            yield from walk_source(str(self.root), source.relpath, self.ignore, self._listed())

    def _entry_data(self, source: Source, entry: Entry, paths: LongPaths) -> str:
        """The content part of an entry's record."""
        path = os.path.join(self.root, source.relpath)
        if entry.relpath:
            path = os.path.join(path, entry.relpath)
        if entry.kind == "file":
            return self.hashes.digest(self._look(path), paths)
        if entry.kind == "symlink":
            dir_fd, rest = paths.split(self._look(path))
            return os.readlink(rest, dir_fd=dir_fd)
        return ""

def _ctx_join(a: str, b: str) -> str:
    """Join two context-relative paths ("." is the root)."""
    return posixpath.normpath(posixpath.join(a, b)) if a not in ("", ".") else b


def _record(h: "hashlib._Hash", fields: list[object]) -> None:
    """Feed one unambiguous line (JSON escapes any separator in names) into the hash."""
    h.update(json.dumps(fields).encode("ascii") + b"\n")


def _not_found(pattern: str, verb: str) -> BuildError:
    """Docker's message for a source that is missing or excluded."""
    return BuildError(f"{verb} failed: file not found in build context or excluded by "
                      f".dockerignore: stat {pattern}: file does not exist")
