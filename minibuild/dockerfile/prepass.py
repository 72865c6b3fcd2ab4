"""The pre-pass: Buildfile text -> logical lines, before any grammar sees it (no lark here).

It does what a grammar does badly, as BuildKit's parser does: the `# escape=` / `# syntax=`
directives at the top, joining continuation lines, dropping comment and blank lines, and cutting
out heredoc bodies when the instruction that opens them asks (`Reader.heredoc`). Every logical
line keeps a map back to the file line and column of each of its characters, so that any later
error points at the text as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from minibuild.dockerfile.instructions import Location
from minibuild.errors import BuildfileError

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_ESCAPES = ("\\", "`")


@dataclass(frozen=True)
class LogicalLine:
    """One instruction's text, continuations joined and stripped, with where it came from.

    `spans` maps offsets back to the file: (offset in the unstripped text, line, column).
    """

    text: str
    spans: tuple[tuple[int, int, int], ...]
    file: str
    escape: str
    lead: int = 0  # blanks stripped from the front of the unstripped text

    def where(self, offset: int) -> tuple[int, int]:
        """The file line and column of a character of `text`."""
        offset += self.lead
        start, line, col = self.spans[0]
        for span in self.spans:
            if span[0] <= offset:
                start, line, col = span
        return line, col + offset - start

    def location(self) -> Location:
        """Where the instruction starts."""
        line, column = self.where(0)
        return Location(self.file, line, column)

    def error(self, message: str, offset: int = 0) -> BuildfileError:
        """A located error; `offset` is a position in `text`."""
        line, column = self.where(offset)
        return BuildfileError.at(Location(self.file, line, column), message)


class Reader:
    """Physical lines -> logical lines (Docker's joining rules) and heredoc bodies."""

    def __init__(self, lines: list[str], escape: str, file: str) -> None:
        self.lines, self.i = lines, 0
        self.escape, self.file = escape, file
        # BuildKit's rule: the escape ends a line as a continuation unless an escape comes right
        # before it (`ENV C trailing\\` is a value ending in a backslash: docker/for-win#5254).
        e = re.escape(escape)
        self.continuation = re.compile(rf"(?:(?<=[^{e}])|^){e}[ \t]*\Z")

    def _trim(self, text: str) -> tuple[str, bool]:
        match = self.continuation.search(text)
        return (text[: match.start()], True) if match else (text, False)

    def next_line(self) -> LogicalLine | None:
        """The next instruction's text, or None at the end of the file."""
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            self.i += 1
            body = raw.lstrip()
            if body.startswith("#"):
                continue
            text, more = self._trim(body)
            if not more and not text.strip():
                continue
            spans = [(0, self.i, len(raw) - len(body) + 1)]
            while more and self.i < len(self.lines):
                raw = self.lines[self.i]
                self.i += 1
                # Comment lines and blank lines inside a continuation are dropped, as in BuildKit.
                if raw.lstrip().startswith("#") or not raw.strip():
                    continue
                spans.append((len(text), self.i, 1))
                piece, more = self._trim(raw)
                text += piece
            line = self._strip(text, spans)
            if line is not None:
                return line
        return None

    def _strip(self, text: str, spans: list[tuple[int, int, int]]) -> LogicalLine | None:
        stripped = text.strip()
        if not stripped:
            return None
        lead = len(text) - len(text.lstrip())
        return LogicalLine(stripped, tuple(spans), self.file, self.escape, lead)

    def heredoc(self, delimiter: str, chomp: bool) -> str | None:
        """The body up to a line holding only the delimiter; None when the file ends first."""
        body = []
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            self.i += 1
            if (raw.lstrip("\t") if chomp else raw) == delimiter:
                return "".join(line + "\n" for line in body)
            body.append(raw.lstrip("\t") if chomp else raw)
        return None


def split_lines(text: str) -> list[str]:
    """The physical lines of a Buildfile: a leading BOM dropped, CRLF read as LF."""
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


def directives(lines: list[str], file: str) -> tuple[str, str | None]:
    """(escape, syntax) from `# escape=` and `# syntax=`: only in the leading run of directive
    lines, each at most once."""
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = _DIRECTIVE.match(line.lstrip())
        if not match or match[1].lower() not in _KNOWN_DIRECTIVES:
            break
        key = match[1].lower()
        if key in found:
            raise BuildfileError.at(Location(file, number),
                                    f"only one {key} parser directive can be used")
        found[key] = match[2]
        if key == "escape" and match[2] not in _ESCAPES:
            raise BuildfileError.at(Location(file, number),
                                    f"invalid escape token '{match[2]}' does not match ` or \\")
    return found.get("escape", "\\"), found.get("syntax")
