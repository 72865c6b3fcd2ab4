"""Buildfile text -> typed instructions. The only module that imports lark.

A pre-pass does what a grammar does badly (directives, continuation lines, comment lines,
heredoc bodies) and keeps a map back to the original line/column of every character. Each
logical line is then recognised by grammar/buildfile.lark (LALR, contextual lexer) and the tree
is turned into an instruction dataclass, checking arity. Every failure is a BuildfileError with
file:line:column; no lark exception escapes.

lark (with regex, ~20 ms) is imported only when text is really parsed: importing this module
for `Buildfile` or a cached parse (parsecache.py) must not pay for it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from minibuild.dockerfile import instructions as ins
from minibuild.errors import BuildfileError
from minibuild.dockerfile.shell import split_raw, unquote

if TYPE_CHECKING:
    import lark

KEYWORDS = (
    "FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR",
    "USER", "MAINTAINER", "STOPSIGNAL", "EXPOSE", "VOLUME", "HEALTHCHECK", "ONBUILD",
)

USAGE = {
    "FROM": "FROM [--platform=<platform>] <image> [AS <name>]",
    "ENV": "ENV <key>=<value> ...",
    "LABEL": "LABEL <key>=<value> ...",
    "ARG": "ARG <name>[=<default value>] ...",
    "HEALTHCHECK": "HEALTHCHECK [OPTIONS] CMD <command>, or HEALTHCHECK NONE",
    "ONBUILD": "ONBUILD <instruction>",
}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_FLAG = re.compile(r"""--[A-Za-z0-9][A-Za-z0-9_.-]*(?:=(?:"[^"]*"|'[^']*'|[^\s"'])*)?""")
_BLANKS = " \t\v\f\r"

# The grammar's escape-dependent terminals, for `# escape=\``.
_BACKTICK_OVERRIDES = """
%override _ESC_SEQ: /`./s
%override _DQ_CHAR: /[^"`]/
%override _PLAIN: /[^\\s"'`]/
"""

_parsers: dict[str, lark.Lark] = {}
_parsers_lock = threading.Lock()


@dataclass(frozen=True)
class Buildfile:
    """A parsed Buildfile: its instructions in order and its parser directives."""

    instructions: tuple[ins.Instruction, ...]
    escape: str
    syntax: str | None
    file: str


def grammar_text() -> str:
    """grammar/buildfile.lark, as the package `minibuild.grammar` (shipped as package data when
    installed; `minibuild/grammar` links to the top-level grammar/ in a source checkout)."""
    return resources.files("minibuild.grammar").joinpath("buildfile.lark").read_text()


def _cache_file(text: str) -> str | None:
    """Where lark may keep its analysed grammar (a pickle: so only in a private dir of ours)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "minibuild")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # someone else could plant a pickle there
    except OSError:
        return None
    import hashlib

    import lark

    tag = hashlib.sha256(f"{lark.__version__}\n{text}".encode()).hexdigest()[:16]
    return os.path.join(directory, f"grammar-{tag}.lark-cache")


def _build_lark(text: str) -> lark.Lark:
    """The LALR parser; its analysis cached on disk (3 ms to load instead of ~40 ms to build)."""
    import lark

    cache = _cache_file(text)
    try:
        return lark.Lark(text, parser="lalr", lexer="contextual", cache=cache or False)
    except OSError:
        return lark.Lark(text, parser="lalr", lexer="contextual")


def _lark(escape: str) -> lark.Lark:
    """The LALR parser for one escape character, built once per process."""
    with _parsers_lock:
        if escape not in _parsers:
            text = grammar_text()
            if escape == "`":
                text += _BACKTICK_OVERRIDES
            _parsers[escape] = _build_lark(text)
        return _parsers[escape]


# ---------------------------------------------------------------- pre-pass


@dataclass(frozen=True)
class _Line:
    """One logical line; `spans` maps offsets back to (line, column) in the file."""

    text: str  # stripped
    spans: tuple[tuple[int, int, int], ...]  # (offset in the unstripped text, line, column)
    lead: int = 0  # blanks stripped from the front of the unstripped text

    def where(self, offset: int) -> tuple[int, int]:
        """The file line and column of a character of `text`."""
        offset += self.lead
        start, line, col = self.spans[0]
        for span in self.spans:
            if span[0] <= offset:
                start, line, col = span
        return line, col + offset - start


class _Reader:
    """Physical lines -> logical lines (Docker's joining rules) and heredoc bodies."""

    def __init__(self, lines: list[str], escape: str) -> None:
        self.lines, self.i = lines, 0
        self.continuation = re.compile(re.escape(escape) + r"[ \t]*\Z")

    def _trim(self, text: str) -> tuple[str, bool]:
        match = self.continuation.search(text)
        return (text[: match.start()], True) if match else (text, False)

    def next_line(self) -> _Line | None:
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
            line = _strip_line(text, spans)
            if line is not None:
                return line
        return None

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


def _strip_line(text: str, spans: list[tuple[int, int, int]]) -> _Line | None:
    stripped = text.strip()
    if not stripped:
        return None
    return _Line(stripped, tuple(spans), len(text) - len(text.lstrip()))


def _split_lines(text: str) -> list[str]:
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _directives(lines: list[str], file: str) -> tuple[str, str | None]:
    """`# escape=` and `# syntax=`: only in the leading run of directive lines."""
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = _DIRECTIVE.match(line.lstrip())
        if not match or match[1].lower() not in _KNOWN_DIRECTIVES:
            break
        key = match[1].lower()
        if key in found:
            raise BuildfileError(f"only one {key} parser directive can be used",
                                 file=file, line=number, column=1)
        found[key] = match[2]
        if key == "escape" and match[2] not in ("\\", "`"):
            raise BuildfileError(f"invalid escape token '{match[2]}' does not match ` or \\",
                                 file=file, line=number, column=1)
    return found.get("escape", "\\"), found.get("syntax")


# ---------------------------------------------------------------- public API


def parse(text: str, file: str = "Buildfile") -> Buildfile:
    """Parse a Buildfile; raises BuildfileError(file=, line=, column=) on any mistake."""
    lines = _split_lines(text)
    escape, syntax = _directives(lines, file)
    reader = _Reader(lines, escape)
    found: list[ins.Instruction] = []
    while (line := reader.next_line()) is not None:
        found.append(_instruction(line, reader, escape, file))
    _check_first(found, file)
    return Buildfile(tuple(found), escape, syntax, file)


def read_text(path: str | os.PathLike) -> str:
    """A Buildfile's text as `parse_file` parses it (UTF-8, newlines translated)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise BuildfileError(f"no such Buildfile {name!r}", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildfileError(f"cannot read Buildfile: {exc}", file=name) from None


def parse_file(path: str | os.PathLike) -> Buildfile:
    """Read and parse a Buildfile from disk."""
    return parse(read_text(path), os.fspath(path))


def _check_first(found: list[ins.Instruction], file: str) -> None:
    message = "the first instruction must be FROM (or ARG before FROM)"
    for instr in found:
        if isinstance(instr, ins.From):
            return
        if not isinstance(instr, ins.Arg):
            loc = instr.location
            raise BuildfileError(message, file=file, line=loc.line, column=loc.column)
    raise BuildfileError(message, file=file, line=1, column=1)


# ---------------------------------------------------------------- one logical line


@dataclass(frozen=True)
class _Ctx:
    """What a builder needs besides the tree: where we are and the logical line."""

    line: _Line
    escape: str
    file: str

    def location(self) -> ins.Location:
        """Where the instruction starts."""
        line, column = self.line.where(0)
        return ins.Location(self.file, line, column)

    def error(self, message: str, offset: int = 0) -> BuildfileError:
        """A located error; `offset` is a position in the logical line."""
        line, column = self.line.where(offset)
        return BuildfileError(message, file=self.file, line=line, column=column)


def _instruction(line: _Line, reader: _Reader, escape: str, file: str) -> ins.Instruction:
    from lark.exceptions import UnexpectedInput

    ctx = _Ctx(line, escape, file)
    try:
        tree = _lark(escape).parse(line.text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, ctx) from None
    node = tree.children[0]
    heredocs = _heredocs(node, ctx, reader)
    return _build(node, ctx, line.text, heredocs)


def _syntax_error(exc: lark.exceptions.UnexpectedInput, ctx: _Ctx) -> BuildfileError:
    """Turn a lark error into one clear line pointing at the offending text."""
    text = ctx.line.text
    offset = _error_offset(exc, text)
    allowed = getattr(exc, "allowed", None) or getattr(exc, "expected", None) or set()
    if "FROM" in allowed:  # the error is where an instruction name should be
        word = text[offset:].split()[0] if text[offset:].strip() else text[offset:]
        return ctx.error(_unknown(word), offset)
    keyword = _keyword_at(text, offset)
    usage = USAGE.get(keyword)
    hint = f" (usage: {usage})" if usage else ""
    if _unmatched_quote(text[offset:], ctx.escape):
        return ctx.error(f"unmatched quote in {keyword} arguments{hint}", offset)
    near = f'near "{text[offset:][:30]}"' if offset < len(text) else "at the end of the line"
    return ctx.error(f"invalid {keyword} syntax {near}{hint}", offset)


def _unmatched_quote(rest: str, escape: str) -> bool:
    try:
        unquote(rest, escape=escape)
    except BuildfileError:
        return True
    return False


def _error_offset(exc: lark.exceptions.UnexpectedInput, text: str) -> int:
    token = getattr(exc, "token", None)
    offset = getattr(exc, "pos_in_stream", None)
    if token is not None and getattr(token, "start_pos", None) is not None:
        offset = token.start_pos
    if offset is None or offset >= len(text):
        return len(text)
    while offset < len(text) and text[offset] in _BLANKS:
        offset += 1  # argument tokens carry their leading blanks; point at the word
    return offset


def _keyword_at(text: str, offset: int) -> str:
    """The instruction being parsed at `offset` (the trigger's, inside ONBUILD)."""
    words = text.split(None, 2)
    keyword = words[0].upper()
    if keyword == "ONBUILD" and len(words) > 1 and offset >= text.find(words[1], len("ONBUILD")):
        return words[1].upper()
    return keyword


def _unknown(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word.upper(), KEYWORDS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f'unknown instruction "{word}"{hint}'


# ---------------------------------------------------------------- heredocs


def _heredocs(node: lark.Tree, ctx: _Ctx, reader: _Reader) -> tuple[ins.Heredoc, ...]:
    """Read the bodies of the `<<EOF` markers of a shell-form RUN or a COPY/ADD."""
    from lark import Tree

    if node.data == "onbuild":
        inner = [c for c in node.children if isinstance(c, Tree)]
        if not inner:
            return ()
        node = inner[0]
    words = _heredoc_candidates(node, ctx.escape)
    found = []
    for word in words:
        marker = _marker(word, ctx.escape)
        if marker is None:
            continue
        delimiter, chomp, expand = marker
        content = reader.heredoc(delimiter, chomp)
        if content is None:
            raise ctx.error(f'unterminated heredoc: no line with only "{delimiter}" '
                            "before the end of the file")
        found.append(ins.Heredoc(delimiter, content, expand, chomp))
    return tuple(found)


def _heredoc_candidates(node: lark.Tree, escape: str) -> list[str]:
    from lark import Token

    tokens = [t for t in node.children if isinstance(t, Token)]
    if node.data == "run" and tokens and tokens[-1].type == "TEXT":
        return split_raw(_arg(tokens[-1]), escape=escape)
    if node.data in ("copy", "add"):
        return [_arg(t) for t in tokens if t.type == "WORD"]
    return []


def _marker(word: str, escape: str) -> tuple[str, bool, bool] | None:
    """(delimiter, chomp_tabs, expand) for a heredoc marker word, else None."""
    match = ins.HEREDOC_MARKER.match(word)
    if match is None:
        return None
    rest = match[3]
    try:
        delimiter = unquote(rest, escape=escape)
    except BuildfileError:
        return None
    if not delimiter or any(ch.isspace() for ch in delimiter):
        return None
    return delimiter, match[2] == "-", delimiter == rest


# ---------------------------------------------------------------- tree -> instruction


def _arg(token: lark.Token) -> str:
    return str(token).lstrip(_BLANKS)


def _parts(node: lark.Tree) -> dict[str, list[Any]]:
    """Children grouped by token type (subtrees under their rule name)."""
    from lark import Tree

    parts: dict[str, list[Any]] = {}
    for child in node.children:
        key = child.data if isinstance(child, Tree) else child.type
        parts.setdefault(key, []).append(child)
    return parts


def _build(node: lark.Tree, ctx: _Ctx, original: str,
           heredocs: tuple[ins.Heredoc, ...]) -> ins.Instruction:
    parts = _parts(node)
    flags = tuple(_FLAG.findall(str(parts["FLAGS"][0]))) if "FLAGS" in parts else ()
    base = {"location": ctx.location(), "flags": flags, "original": original}
    keyword = node.data.rstrip("_").upper()
    return _BUILDERS[node.data](parts, base, ctx, keyword, heredocs)


def _command(parts: dict, ctx: _Ctx, keyword: str) -> ins.Command | None:
    if "EXEC" in parts:
        return ins.ExecForm(tuple(json.loads(_arg(parts["EXEC"][0]))))
    if "TEXT" in parts:
        text = _arg(parts["TEXT"][0])
        _reject_non_string_json(text, ctx)
        return ins.ShellForm(text)
    return None


def _reject_non_string_json(text: str, ctx: _Ctx) -> None:
    # Docker: valid JSON that is not an array of strings is an error, not shell form.
    if not text.startswith("["):
        return
    try:
        value = json.loads(text)
    except ValueError:
        return
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ctx.error("when using JSON array syntax, arrays must be comprised of strings only")


def _list_args(parts: dict, ctx: _Ctx) -> tuple[tuple[str, ...], bool]:
    """Arguments of COPY/ADD/VOLUME: the decoded JSON array, or the blank-separated words."""
    if "EXEC" in parts:
        return tuple(json.loads(_arg(parts["EXEC"][0]))), True
    words = tuple(_arg(t) for t in parts.get("WORD", []))
    if len(words) == 1 and words[0].startswith("["):
        _reject_non_string_json(words[0], ctx)
    return words, False


def _build_from(parts, base, ctx, keyword, heredocs):
    words = [_arg(t) for t in parts.get("WORD", [])]
    if not words:
        raise ctx.error("FROM requires either one or three arguments "
                        f"(usage: {USAGE['FROM']})")
    return ins.From(**base, image=words[0], stage_name=words[1] if len(words) > 1 else None)


def _build_command(parts, base, ctx, keyword, heredocs):
    command = _command(parts, ctx, keyword)
    if command is None:
        raise ctx.error(f"{keyword} requires at least one argument")
    if keyword == "RUN":
        return ins.Run(**base, command=command, heredocs=heredocs)
    if keyword == "CMD":
        return ins.Cmd(**base, command=command)
    return ins.Entrypoint(**base, command=command)


def _build_shell(parts, base, ctx, keyword, heredocs):
    command = _command(parts, ctx, keyword)
    if not isinstance(command, ins.ExecForm):
        raise ctx.error('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]')
    if not command.argv:
        raise ctx.error("SHELL requires at least one argument")
    return ins.Shell(**base, argv=command.argv)


def _build_copy(parts, base, ctx, keyword, heredocs):
    args, json_form = _list_args(parts, ctx)
    if len(args) < 2:
        raise ctx.error(f"{keyword} requires at least two arguments (sources and a destination)")
    cls = ins.Copy if keyword == "COPY" else ins.Add
    return cls(**base, sources=args[:-1], dest=args[-1], heredocs=heredocs, json_form=json_form)


def _build_volume(parts, base, ctx, keyword, heredocs):
    args, json_form = _list_args(parts, ctx)
    if not args:
        raise ctx.error("VOLUME requires at least one argument")
    if any(not a.strip() for a in args):
        raise ctx.error("VOLUME specified can not be an empty string")
    return ins.Volume(**base, paths=args, json_form=json_form)


def _build_expose(parts, base, ctx, keyword, heredocs):
    ports = tuple(_arg(t) for t in parts.get("WORD", []))
    if not ports:
        raise ctx.error("EXPOSE requires at least one argument")
    return ins.Expose(**base, ports=ports)


def _pairs(parts: dict, ctx: _Ctx, keyword: str) -> tuple[tuple[str, str], ...]:
    if "pair" in parts:
        return tuple((_arg(p.children[0]), str(p.children[1])[1:]) for p in parts["pair"])
    if "NAME" not in parts:
        raise ctx.error(f"{keyword} requires at least one argument (usage: {USAGE[keyword]})")
    if "REST" not in parts:
        raise ctx.error(f"{keyword} must have two arguments (usage: {USAGE[keyword]})")
    return ((_arg(parts["NAME"][0]), _arg(parts["REST"][0])),)


def _build_env(parts, base, ctx, keyword, heredocs):
    pairs = _pairs(parts, ctx, keyword)
    return ins.Env(**base, pairs=pairs) if keyword == "ENV" else ins.Label(**base, pairs=pairs)


def _build_arg(parts, base, ctx, keyword, heredocs):
    from lark import Tree

    pairs: list[tuple[str, str | None]] = []
    for child in _ordered(parts, ("pair", "NAME")):
        if isinstance(child, Tree):
            pairs.append((_arg(child.children[0]), str(child.children[1])[1:]))
        else:
            pairs.append((_arg(child), None))
    if not pairs:
        raise ctx.error(f"ARG requires at least one argument (usage: {USAGE['ARG']})")
    return ins.Arg(**base, pairs=tuple(pairs))


def _ordered(parts: dict, keys: tuple[str, ...]) -> list[Any]:
    """Children of the given kinds, back in source order."""
    from lark import Tree

    found = [c for k in keys for c in parts.get(k, [])]
    return sorted(found, key=lambda c: (c.children[0] if isinstance(c, Tree) else c).start_pos)


_REST_CLASSES = {"WORKDIR": ins.Workdir, "USER": ins.User, "MAINTAINER": ins.Maintainer,
                 "STOPSIGNAL": ins.StopSignal}
_REST_FIELDS = {"WORKDIR": "path", "USER": "user", "MAINTAINER": "name", "STOPSIGNAL": "signal"}


def _build_rest(parts, base, ctx, keyword, heredocs):
    if "REST" not in parts:
        raise ctx.error(f"{keyword} requires exactly one argument")
    return _REST_CLASSES[keyword](**base, **{_REST_FIELDS[keyword]: _arg(parts["REST"][0])})


def _build_healthcheck(parts, base, ctx, keyword, heredocs):
    if "NONE" in parts:
        return ins.Healthcheck(**base, command=None)
    if "HC_CMD" not in parts:
        raise ctx.error(f"HEALTHCHECK requires at least one argument (usage: {USAGE[keyword]})")
    command = _command(parts, ctx, keyword)
    if command is None:
        raise ctx.error("Missing command after HEALTHCHECK CMD")
    return ins.Healthcheck(**base, command=command)


def _build_onbuild(parts, base, ctx, keyword, heredocs):
    inner = [c for key, kids in parts.items() if key not in _TOKEN_KINDS for c in kids]
    if not inner:
        raise ctx.error("ONBUILD requires at least one argument")
    node = inner[0]
    name = node.data.rstrip("_").upper()
    if name == "ONBUILD":
        raise ctx.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if name in ("FROM", "MAINTAINER"):
        raise ctx.error(f"{name} isn't allowed as an ONBUILD trigger")
    original = ctx.line.text[node.children[0].start_pos:]
    return ins.Onbuild(**base, trigger=_build(node, ctx, original, heredocs))


_TOKEN_KINDS = {"ONBUILD", "FLAGS"}

_BUILDERS = {
    "from_": _build_from, "run": _build_command, "cmd": _build_command,
    "entrypoint": _build_command, "shell": _build_shell, "copy": _build_copy,
    "add": _build_copy, "volume": _build_volume, "expose": _build_expose, "env": _build_env,
    "label": _build_env, "arg": _build_arg, "workdir": _build_rest, "user": _build_rest,
    "maintainer": _build_rest, "stopsignal": _build_rest, "healthcheck": _build_healthcheck,
    "onbuild": _build_onbuild,
}
