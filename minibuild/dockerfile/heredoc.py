"""Heredocs: find the `<<EOF` markers of an instruction's tree and read their bodies.

Only a shell-form RUN and COPY/ADD (also as an ONBUILD trigger) open heredocs, as in BuildKit.
The bodies follow the instruction's logical line in the file, in marker order; the pre-pass
reader hands them over (`Reader.heredoc`). lark is imported only when a tree is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minibuild.dockerfile.instructions import HEREDOC_MARKER, Heredoc
from minibuild.dockerfile.prepass import LogicalLine, Reader
from minibuild.dockerfile.shell import split_raw, unquote
from minibuild.dockerfile.syntax import token_text
from minibuild.errors import BuildfileError

if TYPE_CHECKING:
    import lark


def collect(node: lark.Tree, line: LogicalLine, reader: Reader) -> tuple[Heredoc, ...]:
    """Read the bodies of the `<<EOF` markers of a shell-form RUN or a COPY/ADD."""
    from lark import Tree

    if node.data == "onbuild":
        inner = [c for c in node.children if isinstance(c, Tree)]
        if not inner:
            return ()
        node = inner[0]
    found = []
    for word in _candidates(node, line.escape):
        found_marker = marker(word, line.escape)
        if found_marker is None:
            continue
        delimiter, chomp, expand = found_marker
        content = reader.heredoc(delimiter, chomp)
        if content is None:
            raise line.error(f'unterminated heredoc: no line with only "{delimiter}" '
                             "before the end of the file")
        found.append(Heredoc(delimiter, content, expand, chomp))
    return tuple(found)


def marker(word: str, escape: str) -> tuple[str, bool, bool] | None:
    """(delimiter, chomp_tabs, expand) for a heredoc marker word, else None."""
    match = HEREDOC_MARKER.match(word)
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


def _candidates(node: lark.Tree, escape: str) -> list[str]:
    """The words that may be markers: a shell-form RUN's words, COPY/ADD's arguments."""
    from lark import Token

    tokens = [t for t in node.children if isinstance(t, Token)]
    if node.data == "run" and tokens and tokens[-1].type == "TEXT":
        return split_raw(token_text(tokens[-1]), escape=escape)
    if node.data in ("copy", "add"):
        return [token_text(t) for t in tokens if t.type == "WORD"]
    return []
