"""The transformer: one instruction's lark tree -> a typed instruction (instructions.py).

It checks what the grammar leaves open, as BuildKit's `instructions` package does: arity
(`COPY` needs a source and a destination), forms (`SHELL` only in JSON form), ONBUILD's
forbidden triggers; every mistake is a BuildfileError at the instruction. Arguments stay raw
(expansion is the planner's business). lark is imported only when a tree is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from minibuild.dockerfile.instructions import (
    Add, Arg, Cmd, Command, Copy, Entrypoint, Env, ExecForm, Expose, From, Healthcheck, Heredoc,
    Instruction, Label, Location, Maintainer, Onbuild, Run, Shell, ShellForm, StopSignal, User,
    Volume, Workdir,
)
from minibuild.dockerfile.prepass import LogicalLine
from minibuild.dockerfile.syntax import USAGE, token_text

if TYPE_CHECKING:
    import lark

_FLAG = re.compile(r"""--[A-Za-z0-9][A-Za-z0-9_.-]*(?:=(?:"[^"]*"|'[^']*'|[^\s"'])*)?""")


def instruction(node: lark.Tree, line: LogicalLine, heredocs: tuple[Heredoc, ...],
                end_line: int | None = None) -> Instruction:
    """The typed instruction of a tree from `syntax.recognise` (its heredoc bodies already read,
    up to `end_line`, the last line the instruction takes in the file)."""
    location = line.location()
    if end_line is not None and end_line > location.line:
        location = replace(location, end_line=end_line)
    return _build(node, line, line.text, heredocs, location)


def _parts(node: lark.Tree) -> dict[str, list[Any]]:
    """Children grouped by token type (subtrees under their rule name)."""
    from lark import Tree

    parts: dict[str, list[Any]] = {}
    for child in node.children:
        key = child.data if isinstance(child, Tree) else child.type
        parts.setdefault(key, []).append(child)
    return parts


def _build(node: lark.Tree, line: LogicalLine, original: str,
           heredocs: tuple[Heredoc, ...], location: Location) -> Instruction:
    parts = _parts(node)
    flags = tuple(_FLAG.findall(str(parts["FLAGS"][0]))) if "FLAGS" in parts else ()
    base = {"location": location, "flags": flags, "original": original}
    keyword = node.data.rstrip("_").upper()
    return _BUILDERS[node.data](parts, base, line, keyword, heredocs)


def _command(parts: dict, line: LogicalLine, keyword: str) -> Command | None:
    if "EXEC" in parts:
        return ExecForm(tuple(json.loads(token_text(parts["EXEC"][0]))))
    if "TEXT" in parts:
        text = token_text(parts["TEXT"][0])
        _reject_non_string_json(text, line)
        return ShellForm(text)
    return None


def _reject_non_string_json(text: str, line: LogicalLine) -> None:
    # Docker: valid JSON that is not an array of strings is an error, not shell form.
    if not text.startswith("["):
        return
    try:
        value = json.loads(text)
    except ValueError:
        return
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise line.error("when using JSON array syntax, arrays must be comprised of strings only")


def _list_args(parts: dict, line: LogicalLine) -> tuple[tuple[str, ...], bool]:
    """Arguments of COPY/ADD/VOLUME: the decoded JSON array, or the blank-separated words."""
    if "EXEC" in parts:
        return tuple(json.loads(token_text(parts["EXEC"][0]))), True
    words = tuple(token_text(t) for t in parts.get("WORD", []))
    if len(words) == 1 and words[0].startswith("["):
        _reject_non_string_json(words[0], line)
    return words, False


def _build_from(parts, base, line, keyword, heredocs):
    words = [token_text(t) for t in parts.get("WORD", [])]
    if not words:
        raise line.error("FROM requires either one or three arguments "
                         f"(usage: {USAGE['FROM']})")
    return From(**base, image=words[0], stage_name=words[1] if len(words) > 1 else None)


def _build_command(parts, base, line, keyword, heredocs):
    command = _command(parts, line, keyword)
    if command is None:
        raise line.error(f"{keyword} requires at least one argument")
    if keyword == "RUN":
        return Run(**base, command=command, heredocs=heredocs)
    if keyword == "CMD":
        return Cmd(**base, command=command)
    return Entrypoint(**base, command=command)


def _build_shell(parts, base, line, keyword, heredocs):
    command = _command(parts, line, keyword)
    if not isinstance(command, ExecForm):
        raise line.error("SHELL requires the arguments to be in JSON form, "
                         'e.g. SHELL ["/bin/sh", "-c"]')
    if not command.argv:
        raise line.error("SHELL requires at least one argument")
    return Shell(**base, argv=command.argv)


def _build_copy(parts, base, line, keyword, heredocs):
    args, json_form = _list_args(parts, line)
    if len(args) < 2:
        raise line.error(f"{keyword} requires at least two arguments (sources and a destination)")
    cls = Copy if keyword == "COPY" else Add
    return cls(**base, sources=args[:-1], dest=args[-1], heredocs=heredocs, json_form=json_form)


def _build_volume(parts, base, line, keyword, heredocs):
    args, json_form = _list_args(parts, line)
    if not args:
        raise line.error("VOLUME requires at least one argument")
    if any(not a.strip() for a in args):
        raise line.error("VOLUME specified can not be an empty string")
    return Volume(**base, paths=args, json_form=json_form)


def _build_expose(parts, base, line, keyword, heredocs):
    ports = tuple(token_text(t) for t in parts.get("WORD", []))
    if not ports:
        raise line.error("EXPOSE requires at least one argument")
    return Expose(**base, ports=ports)


def _pairs(parts: dict, line: LogicalLine, keyword: str) -> tuple[tuple[str, str], ...]:
    if "pair" in parts:
        return tuple((token_text(p.children[0]), str(p.children[1])[1:]) for p in parts["pair"])
    if "NAME" not in parts:
        raise line.error(f"{keyword} requires at least one argument (usage: {USAGE[keyword]})")
    if "REST" not in parts:
        raise line.error(f"{keyword} must have two arguments (usage: {USAGE[keyword]})")
    return ((token_text(parts["NAME"][0]), token_text(parts["REST"][0])),)


def _build_env(parts, base, line, keyword, heredocs):
    pairs = _pairs(parts, line, keyword)
    return Env(**base, pairs=pairs) if keyword == "ENV" else Label(**base, pairs=pairs)


def _build_arg(parts, base, line, keyword, heredocs):
    from lark import Tree

    pairs: list[tuple[str, str | None]] = []
    for child in _ordered(parts, ("pair", "NAME")):
        if isinstance(child, Tree):
            pairs.append((token_text(child.children[0]), str(child.children[1])[1:]))
        else:
            pairs.append((token_text(child), None))
    if not pairs:
        raise line.error(f"ARG requires at least one argument (usage: {USAGE['ARG']})")
    return Arg(**base, pairs=tuple(pairs))


def _ordered(parts: dict, keys: tuple[str, ...]) -> list[Any]:
    """Children of the given kinds, back in source order."""
    from lark import Tree

    found = [c for k in keys for c in parts.get(k, [])]
    return sorted(found, key=lambda c: (c.children[0] if isinstance(c, Tree) else c).start_pos)


_REST_CLASSES = {"WORKDIR": Workdir, "USER": User, "MAINTAINER": Maintainer,
                 "STOPSIGNAL": StopSignal}
_REST_FIELDS = {"WORKDIR": "path", "USER": "user", "MAINTAINER": "name", "STOPSIGNAL": "signal"}


def _build_rest(parts, base, line, keyword, heredocs):
    if "REST" not in parts:
        raise line.error(f"{keyword} requires exactly one argument")
    return _REST_CLASSES[keyword](**base, **{_REST_FIELDS[keyword]: token_text(parts["REST"][0])})


def _build_healthcheck(parts, base, line, keyword, heredocs):
    if "NONE" in parts:
        return Healthcheck(**base, command=None)
    if "HC_CMD" not in parts:
        raise line.error(f"HEALTHCHECK requires at least one argument (usage: {USAGE[keyword]})")
    command = _command(parts, line, keyword)
    if command is None:
        raise line.error("Missing command after HEALTHCHECK CMD")
    return Healthcheck(**base, command=command)


def _build_onbuild(parts, base, line, keyword, heredocs):
    inner = [c for key, kids in parts.items() if key not in _TOKEN_KINDS for c in kids]
    if not inner:
        raise line.error("ONBUILD requires at least one argument")
    node = inner[0]
    name = node.data.rstrip("_").upper()
    if name == "ONBUILD":
        raise line.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if name in ("FROM", "MAINTAINER"):
        raise line.error(f"{name} isn't allowed as an ONBUILD trigger")
    # The trigger's text carries its heredoc bodies, as BuildKit's: the child build parses it
    # again from the image config, where nothing else holds them.
    original = line.text[node.children[0].start_pos:] + "".join(
        f"\n{h.content}{h.delimiter}" for h in heredocs)
    return Onbuild(**base, trigger=_build(node, line, original, heredocs, base["location"]))


_TOKEN_KINDS = {"ONBUILD", "FLAGS"}

_BUILDERS = {
    "from_": _build_from, "run": _build_command, "cmd": _build_command,
    "entrypoint": _build_command, "shell": _build_shell, "copy": _build_copy,
    "add": _build_copy, "volume": _build_volume, "expose": _build_expose, "env": _build_env,
    "label": _build_env, "arg": _build_arg, "workdir": _build_rest, "user": _build_rest,
    "maintainer": _build_rest, "stopsignal": _build_rest, "healthcheck": _build_healthcheck,
    "onbuild": _build_onbuild,
}
