""".dockerignore rules with Docker's semantics, and Go `filepath.Match` globs as regexes.

Docker (moby/patternmatcher): each line is a Go glob over the whole relative path where `*`, `?`
and `[..]` never cross a `/`, `**` spans any number of components, `!` re-includes, the last
matching line wins, and a pattern matching a parent directory matches everything below it.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import BuildError

_GLOB_CHARS = re.compile(r"(?<!\\)[*?\[]")


def has_glob(pattern: str) -> bool:
    """True when a path pattern holds an unescaped `*`, `?` or `[`."""
    return _GLOB_CHARS.search(pattern) is not None


def glob_to_regex(pattern: str, *, double_star: bool = False) -> str:
    """Translate a Go `filepath.Match` pattern (optionally with Docker's `**`) to a regex."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*" and double_star and pattern.startswith("**", i):
            i += 2
            if i < n and pattern[i] == "/":
                i += 1  # `**/` behaves like `**`
            out.append(".*" if i >= n else "(.*/)?")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
            continue
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    """Translate the `[...]` starting at `start`; return the regex and the index after `]`."""
    i = start + 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            ch = pattern[i]
        elif ch == "/":
            break  # Go's Match never lets a class match the separator
        # Escape everything but `-` so Python's set-operation syntax never kicks in.
        out.append(ch if ch == "-" else re.escape(ch))
        first = False
        i += 1
    raise BuildError(f"bad pattern {pattern!r}: unterminated or invalid character class")


def ignore_files(context_root: Path,
                 buildfile: str | os.PathLike | None = None) -> tuple[Path, ...]:
    """Where a build's ignore rules may be, the first present one winning:
    `<Buildfile>.dockerignore` beside the Buildfile (`Dockerfile.dockerignore`,
    `app.Dockerfile.dockerignore`: BuildKit's dockerui), then the context's `.dockerignore`.
    A Buildfile from stdin has none beside it."""
    beside = (Path(f"{os.fspath(buildfile)}.dockerignore"),) if buildfile is not None else ()
    return (*beside, Path(context_root) / ".dockerignore")


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned .dockerignore line: its text, compiled regex and whether it re-includes."""

    text: str
    regex: re.Pattern[str]
    exclusion: bool

    @property
    def components(self) -> int | None:
        """How many path components every path the pattern matches has: None when that varies
        (`**`, or a class or escape that might stand for `/`)."""
        if any(mark in self.text for mark in ("**", "[", "\\")):
            return None
        return self.text.count("/") + 1

    def matches(self, relpath: str) -> bool:
        """True when the pattern matches the path or one of its parent directories."""
        count = self.components
        if count is not None:  # one prefix to try, not all: a 10,000-deep path stays cheap
            parts = relpath.split("/", count)
            return len(parts) >= count and bool(self.regex.match("/".join(parts[:count])))
        if self.regex.match(relpath):
            return True
        parts = relpath.split("/")
        return any(self.regex.match("/".join(parts[:i])) for i in range(1, len(parts)))


@dataclass(frozen=True)
class IgnoreRules:
    """The ordered patterns of a context's .dockerignore (empty when there is none)."""

    patterns: tuple[IgnorePattern, ...] = ()

    @classmethod
    def load(cls, context_root: Path, buildfile: str | os.PathLike | None = None) -> IgnoreRules:
        """Read the first of `ignore_files(...)` that is present (none: no rules)."""
        for path in ignore_files(context_root, buildfile):
            try:
                text = path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                continue
            return cls.parse(text, source=str(path))
        return cls()

    @classmethod
    def parse(cls, text: str, *, source: str = ".dockerignore") -> IgnoreRules:
        """Parse .dockerignore text: comments, blank lines, `!`, cleaned slashes."""
        patterns: list[IgnorePattern] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if raw.startswith("#"):
                continue  # Docker only treats `#` in column 1 as a comment
            line = raw.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            if not line:
                raise BuildError('illegal exclusion pattern: "!"', file=source, line=lineno)
            patterns.append(_compile(line, exclusion, source, lineno))
        return cls(tuple(patterns))

    @classmethod
    def of(cls, patterns: tuple[str, ...], *, source: str = "--exclude") -> IgnoreRules:
        """Rules from patterns given one by one (COPY --exclude): each is one .dockerignore
        line, `!` included, but no comment."""
        compiled = []
        for raw in patterns:
            line = raw.strip()
            exclusion = line.startswith("!")
            line = line[1:].strip() if exclusion else line
            if not line:
                raise BuildError(f"{source}={raw}: empty pattern")
            compiled.append(_compile(line, exclusion, source, 0))
        return cls(tuple(compiled))

    @property
    def has_exceptions(self) -> bool:
        """True when some `!` line may re-include a path below an excluded directory."""
        return any(p.exclusion for p in self.patterns)

    def ignored(self, relpath: str) -> bool:
        """True when the context-relative path is excluded (last matching line wins)."""
        relpath = relpath.strip("/")
        if relpath in ("", "."):
            return False  # the context root itself is never excluded
        matched = False
        for pattern in self.patterns:
            # A pattern can only flip the current answer; skip it otherwise (Docker does too).
            if pattern.exclusion != matched:
                continue
            if pattern.matches(relpath):
                matched = not pattern.exclusion
        return matched


def _compile(line: str, exclusion: bool, source: str, lineno: int) -> IgnorePattern:
    """Clean a pattern like Go's filepath.Clean and compile it."""
    cleaned = posixpath.normpath(line)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    try:
        regex = re.compile("^" + glob_to_regex(cleaned, double_star=True) + "$", re.DOTALL)
    except (BuildError, re.error) as exc:
        raise BuildError(f"bad .dockerignore pattern {line!r}", file=source, line=lineno) from exc
    return IgnorePattern(cleaned, regex, exclusion)
