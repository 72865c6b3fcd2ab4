"""Dockerfile word processing: quotes, escapes and `$var` expansion.

A port of the semantics of BuildKit's `frontend/dockerfile/shell/lex.go`: single quotes are
literal, double quotes allow `$` and escape only `"`, `$` and the escape character, the escape
character outside quotes protects any character (and an escape at the very end is dropped).
Unknown variables expand to "". Errors are BuildfileError carrying the instruction's location.
"""

from __future__ import annotations

from collections.abc import Mapping

from minibuild.dockerfile import patterns
from minibuild.errors import BuildfileError

_SPECIAL_PARAMS = "@*#?-$!0"
_BLANKS = " \t\n\r\v\f"


class _Words:
    """Word splitting that mirrors lex.go's wordsStruct (quoted text never splits)."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        """Add an unquoted character: a blank ends the current word."""
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(ch)

    def add_string(self, text: str) -> None:
        """Add unquoted text (an expansion result): it may split."""
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        """Add quoted or escaped text: never splits, and starts a word."""
        self.word += text
        self.in_word = True

    def done(self) -> list[str]:
        """Finish: the words found, empty words dropped."""
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


# In a here-document a backslash escapes only these; before anything else it stays (POSIX).
_HEREDOC_ESCAPED = ("$", "`", "\\", "\n")


class _Lexer:
    """One pass over one string; `expand=False` keeps `$...` as written (for unquote);
    `heredoc=True` reads a here-document: quotes are plain text, POSIX's escapes."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, expand: bool,
                 heredoc: bool = False) -> None:
        self.text, self.pos = text, 0
        self.env, self.escape, self.expand = env, escape, expand
        self.heredoc = heredoc

    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        """Consume and return the next character ("" at the end)."""
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def process(self, stop: str = "", raw_escapes: bool = False) -> tuple[str, list[str]]:
        """Read up to `stop` (or the end); return the joined text and the split words.
        `raw_escapes` keeps the escape characters (a pattern of `${v#p}` needs its `\\*`)."""
        result: list[str] = []
        words = _Words()
        while (ch := self.peek()) != "":
            if stop and ch == stop:
                self.next()
                return "".join(result), words.done()
            if ch == "$":
                piece = self.dollar()
                words.add_string(piece)  # an unquoted expansion IS split again, as in lex.go
            elif ch in "'\"" and not self.heredoc:
                piece = self.single_quoted() if ch == "'" else self.double_quoted()
                words.add_raw(piece)
            elif ch == self.escape:
                self.next()
                if self.peek() == "":
                    break  # a lone escape at the very end is dropped
                piece = self.escaped(raw_escapes)
                words.add_raw(piece)
            else:
                piece = self.next()
                words.add_char(piece)
            result.append(piece)
        if stop:
            raise _Problem(f"syntax error: missing '{stop}'")
        return "".join(result), words.done()

    def escaped(self, raw: bool) -> str:
        """What an escape (already read) and the character after it stand for."""
        if self.heredoc and self.peek() not in _HEREDOC_ESCAPED:
            return self.escape  # POSIX: `\\n` in a here-document stays `\\n`
        ch = self.next()
        if self.heredoc and ch == "\n":
            return ""  # an escaped newline joins the lines
        return self.escape + ch if raw else ch

    def single_quoted(self) -> str:
        """'...': everything literal up to the next single quote."""
        self.next()
        end = self.text.find("'", self.pos)
        if end < 0:
            raise _Problem("unexpected end of statement while looking for matching single-quote")
        piece, self.pos = self.text[self.pos:end], end + 1
        return piece

    def double_quoted(self) -> str:
        """"...": `$` expands; the escape char only escapes ", $ and itself."""
        self.next()
        result: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise _Problem("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(result)
            if ch == "$":
                result.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.peek() == "":
                    continue
                if self.peek() in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def name(self) -> str:
        """A variable name: letters/digits/_, all digits, or one special parameter."""
        ch = self.peek()
        if ch.isdigit():
            start = self.pos
            while self.peek().isdigit():
                self.next()
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        start = self.pos
        while (ch := self.peek()) and (ch.isalnum() or ch == "_"):
            self.next()
        return self.text[start:self.pos]

    def dollar(self) -> str:
        """`$name` or `${...}`; with expand=False the source text itself."""
        start = self.pos
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.env.get(name, "") if self.expand else self.text[start:self.pos]
        self.next()
        if self.peek() == "":
            raise _Problem("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise _Problem("syntax error: bad substitution")
        name = self.name()
        value = self.braced(name)
        return value if self.expand else self.text[start:self.pos]

    def braced(self, name: str) -> str:
        """The part of `${name...}` after the name, up to and including the `}`."""
        op = self.next()
        if op == "}":
            return self.env.get(name, "")
        if op == "":
            raise _Problem("syntax error: missing '}'")
        if op == "/":
            return self.replaced(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
        shown = (":" if null_is_unset else "") + op
        if op not in ("-", "+", "?", "#", "%") or (null_is_unset and op in "#%"):
            raise _Problem(f"unsupported modifier ({shown}) in substitution")
        word, _ = self.process("}", raw_escapes=op in "#%")
        if not self.expand:
            return ""  # the caller keeps the source text; a failing ${v:?} must not fire here
        if op in "#%":
            return patterns.trim(self.env.get(name, ""), op, word)
        return _apply(name, op, word, null_is_unset, self.env)

    def replaced(self, name: str) -> str:
        """`${name/pattern/replacement}` (first match) or `${name//pattern/replacement}` (all)."""
        every = self.peek() == "/"
        if every:
            self.next()
        try:
            pattern, _ = self.process("/", raw_escapes=True)
        except _Problem:
            raise _Problem("syntax error: missing '/' in ${}") from None
        replacement, _ = self.process("}")
        if not self.expand:
            return ""
        return patterns.replace(self.env.get(name, ""), pattern, replacement, every)


class _Problem(Exception):
    """Internal: a lexing problem, turned into a located BuildfileError at the API boundary."""


def _apply(name: str, op: str, word: str, null_is_unset: bool, env: Mapping[str, str]) -> str:
    is_set = name in env
    value = env.get(name, "")
    missing = not is_set or (null_is_unset and value == "")
    if op == "-":
        return word if missing else value
    if op == "+":
        return "" if missing else word
    if missing:  # op == "?"
        default = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
        raise _Problem(f"{name}: {word or default}")
    return value


def _run(text: str, env: Mapping[str, str], escape: str, expand: bool, location) -> tuple[str, list[str]]:
    try:
        return _Lexer(text, env, escape, expand).process()
    except (_Problem, patterns.PatternError) as problem:
        message = f"{problem} (in {text!r})"
        if location is None:
            raise BuildfileError(message) from None
        raise BuildfileError.at(location, message) from None


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\", location=None) -> str:
    """Expand one word: variables substituted, quotes and escapes removed, blanks kept."""
    return _run(word, env, escape, True, location)[0]


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\", location=None) -> list[str]:
    """Expand and split on unquoted blanks; an unquoted `$v` holding blanks splits too (lex.go)."""
    return _run(text, env, escape, True, location)[1]


def expand_heredoc(text: str, env: Mapping[str, str], *, location=None) -> str:
    """A here-document's body with its variables expanded, as the reference says "regular
    here-doc" rules (POSIX) go: quotes are text; a backslash escapes only `$`, a backquote, a
    backslash and a newline (which it removes), and stays before anything else. Command
    substitutions are not run: `$(...)` and backquotes stay as written."""
    try:
        return _Lexer(text, env, "\\", True, heredoc=True).process()[0]
    except (_Problem, patterns.PatternError) as problem:
        raise BuildfileError.at(location, f"{problem} (in a heredoc)") if location is not None \
            else BuildfileError(f"{problem} (in a heredoc)") from None


def unquote(word: str, *, escape: str = "\\") -> str:
    """Remove quotes and escapes without expanding: `$v` and `${v:-x}` stay as written."""
    return _run(word, {}, escape, False, None)[0]


def split_raw(text: str, *, escape: str = "\\") -> list[str]:
    """Split on unquoted blanks, keeping quotes and escapes (an unclosed quote runs to the end)."""
    words: list[str] = []
    word, quote, i = "", "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == escape and quote == '"' and i + 1 < len(text):
                word, i = word + ch + text[i + 1], i + 2
                continue
            quote = "" if ch == quote else quote
        elif ch == escape and i + 1 < len(text):
            word, i = word + ch + text[i + 1], i + 2
            continue
        elif ch in "'\"":
            quote = ch
        elif ch in _BLANKS:
            if word:
                words.append(word)
            word, i = "", i + 1
            continue
        word, i = word + ch, i + 1
    if word:
        words.append(word)
    return words
