"""Buildfile text -> typed instructions: the frontend's entry point.

The work is done in three steps, as BuildKit's parser -> instructions split does it:

    prepass.py      directives, continuation lines, comments, heredoc bodies -> logical lines
    syntax.py       one logical line -> a lark tree (grammar/buildfile.lark)
    heredoc.py      the tree's `<<EOF` markers -> their bodies, read on from the file
    transformer.py  the tree -> an instruction dataclass (instructions.py), arity checked

Every failure is a BuildfileError with file:line:column; no lark exception escapes. No module
of the frontend imports lark when it is imported (only when text is really parsed): importing
this module for `Buildfile` or a cached parse (build/parsecache.py) must not pay for it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from minibuild.dockerfile import heredoc, instructions as ins, patterns, prepass, shell, syntax
from minibuild.dockerfile import transformer
from minibuild.dockerfile.instructions import Location
from minibuild.errors import BuildfileError


# The names a build looks for in its context without -f, in order: ours, Docker's (its CLI also
# takes a lowercase one) and podman's/buildah's.
DEFAULT_NAMES = ("Buildfile", "Dockerfile", "dockerfile", "Containerfile")


@dataclass(frozen=True)
class Buildfile:
    """A parsed Buildfile: its instructions in order and its parser directives."""

    instructions: tuple[ins.Instruction, ...]
    escape: str
    syntax: str | None
    file: str


def parse(text: str, file: str = "Buildfile") -> Buildfile:
    """Parse a Buildfile; raises BuildfileError(file=, line=, column=) on any mistake."""
    lines = prepass.split_lines(text)
    escape, syntax_ref = prepass.directives(lines, file)
    reader = prepass.Reader(lines, escape, file)
    found: list[ins.Instruction] = []
    while (line := reader.next_line()) is not None:
        found.append(_instruction(line, reader))
    _check_first(found, file)
    return Buildfile(tuple(found), escape, syntax_ref, file)


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


def default_buildfile(context: str | os.PathLike) -> str:
    """The Buildfile of a context given no -f: the first of DEFAULT_NAMES there; a
    BuildfileError naming every name tried when there is none."""
    for name in DEFAULT_NAMES:
        path = os.path.join(context, name)
        if os.path.isfile(path):
            return path
    tried = ", ".join(DEFAULT_NAMES)
    raise BuildfileError(f"no Buildfile in {os.fspath(context)!r} (tried {tried}); "
                         "name one with -f", file=os.fspath(context))


def parse_file(path: str | os.PathLike) -> Buildfile:
    """Read and parse a Buildfile from disk."""
    return parse(read_text(path), os.fspath(path))


def code_files() -> tuple[str, ...]:
    """The source files of every module a parse runs (the parse cache keys on their content)."""
    modules = (sys.modules[__name__], prepass, syntax, heredoc, transformer, ins, shell, patterns)
    return tuple(module.__file__ for module in modules)


def _instruction(line: prepass.LogicalLine, reader: prepass.Reader) -> ins.Instruction:
    """One logical line as an instruction; its heredoc bodies are read on from `reader`."""
    node = syntax.recognise(line)
    bodies = heredoc.collect(node, line, reader)
    # Its last line: the heredoc's closing delimiter, else the last of its continuation lines.
    end_line = reader.i if bodies else line.spans[-1][1]
    return transformer.instruction(node, line, bodies, end_line)


def _check_first(found: list[ins.Instruction], file: str) -> None:
    message = "the first instruction must be FROM (or ARG before FROM)"
    for instr in found:
        if isinstance(instr, ins.From):
            return
        if not isinstance(instr, ins.Arg):
            raise BuildfileError.at(instr, message)
    raise BuildfileError.at(Location(file, 1), message)
