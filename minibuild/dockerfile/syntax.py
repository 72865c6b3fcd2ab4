"""The grammar: one logical line -> a lark tree (grammar/buildfile.lark, LALR, contextual lexer).

One of the three frontend modules that use lark (with heredoc.py and transformer.py), and like
them it imports lark only inside the functions that parse: lark (with regex, ~20 ms) must not
be paid for by importing the parser, e.g. for a cached parse (build/parsecache.py). A lark
error never escapes: it becomes a BuildfileError pointing at the offending text.
"""

from __future__ import annotations

import os
import threading
from importlib import resources
from typing import TYPE_CHECKING

from minibuild.dockerfile.prepass import LogicalLine
from minibuild.dockerfile.shell import unquote
from minibuild.errors import BuildfileError

if TYPE_CHECKING:
    import lark
    from lark.exceptions import UnexpectedInput

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

BLANKS = " \t\v\f\r"

# The grammar's escape-dependent terminals, for `# escape=\``.
_BACKTICK_OVERRIDES = """
%override _ESC_SEQ: /`./s
%override _DQ_CHAR: /[^"`]/
%override _PLAIN: /[^\\s"'`]/
"""

_parsers: dict[str, lark.Lark] = {}
_parsers_lock = threading.Lock()


def grammar_text() -> str:
    """grammar/buildfile.lark, as the package `minibuild.grammar` (shipped as package data when
    installed; `minibuild/grammar` links to the top-level grammar/ in a source checkout)."""
    return resources.files("minibuild.grammar").joinpath("buildfile.lark").read_text()


def token_text(token: lark.Token) -> str:
    """A token's text without the blanks in front (the grammar's argument tokens carry them)."""
    return str(token).lstrip(BLANKS)


def recognise(line: LogicalLine) -> lark.Tree:
    """The tree of one instruction (the child of `start`); a located BuildfileError if the line
    is not one."""
    from lark.exceptions import UnexpectedInput

    try:
        tree = _lark(line.escape).parse(line.text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, line) from None
    return tree.children[0]


# -- the parser, built once per escape character -------------------------------------------


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


# -- lark's errors -> one clear line ---------------------------------------------------------


def _syntax_error(exc: UnexpectedInput, line: LogicalLine) -> BuildfileError:
    """Turn a lark error into one clear line pointing at the offending text."""
    text = line.text
    offset = _error_offset(exc, text)
    allowed = getattr(exc, "allowed", None) or getattr(exc, "expected", None) or set()
    if "FROM" in allowed:  # the error is where an instruction name should be
        word = text[offset:].split()[0] if text[offset:].strip() else text[offset:]
        return line.error(_unknown(word), offset)
    keyword = _keyword_at(text, offset)
    usage = USAGE.get(keyword)
    hint = f" (usage: {usage})" if usage else ""
    if _unmatched_quote(text[offset:], line.escape):
        return line.error(f"unmatched quote in {keyword} arguments{hint}", offset)
    near = f'near "{text[offset:][:30]}"' if offset < len(text) else "at the end of the line"
    return line.error(f"invalid {keyword} syntax {near}{hint}", offset)


def _unmatched_quote(rest: str, escape: str) -> bool:
    try:
        unquote(rest, escape=escape)
    except BuildfileError:
        return True
    return False


def _error_offset(exc: UnexpectedInput, text: str) -> int:
    token = getattr(exc, "token", None)
    offset = getattr(exc, "pos_in_stream", None)
    if token is not None and getattr(token, "start_pos", None) is not None:
        offset = token.start_pos
    if offset is None or offset >= len(text):
        return len(text)
    while offset < len(text) and text[offset] in BLANKS:
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
