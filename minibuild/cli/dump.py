"""`minibuild parse`: the parsed instructions of a Buildfile as JSON, one object per instruction.

The shape is the golden files' (tests/testdata/parser/*.json): keyword, line, flags, form
(exec/shell/None), args, and `pairs`/`heredocs` where an instruction has them.
"""

from __future__ import annotations

from typing import Any

from minibuild.dockerfile import instructions as ins
from minibuild.dockerfile.parser import Buildfile
from minibuild.dockerfile.shell import unquote


def dump(buildfile: Buildfile) -> list[dict]:
    """The JSON shape printed by `minibuild parse`: one object per instruction."""
    return [_dump_one(instr, buildfile.escape) for instr in buildfile.instructions]


def _dump_one(instr: ins.Instruction, escape: str) -> dict:
    out: dict[str, Any] = {"instruction": instr.keyword, "line": instr.location.line,
                           "flags": list(instr.flags), "form": None, "args": None}
    _DUMPERS[type(instr)](instr, out, escape)
    heredocs = getattr(instr, "heredocs", ())
    if heredocs:
        out["heredocs"] = [{"delimiter": h.delimiter, "content": h.content} for h in heredocs]
    return out


def _dump_command(command: ins.Command | None, out: dict) -> None:
    if isinstance(command, ins.ExecForm):
        out["form"], out["args"] = "exec", list(command.argv)
    elif isinstance(command, ins.ShellForm):
        out["form"], out["args"] = "shell", command.text


def _dump_from(instr: ins.From, out: dict, escape: str) -> None:
    # The words as written (so `as` keeps its spelling); flags never hold the image name.
    flag_words = sum(len(flag.split()) for flag in instr.flags)
    out["args"] = instr.original.split()[1 + flag_words:]


def _dump_list(field: str):
    def dumper(instr, out: dict, escape: str) -> None:
        if field == "copy":
            out["args"] = [*instr.sources, instr.dest]
        else:
            out["args"] = list(getattr(instr, field))
        if getattr(instr, "json_form", False):
            out["form"] = "exec"
    return dumper


def _dump_pairs(instr, out: dict, escape: str) -> None:
    out["pairs"] = [[unquote(k, escape=escape), None if v is None else unquote(v, escape=escape)]
                    for k, v in instr.pairs]


def _dump_field(field: str):
    def dumper(instr, out: dict, escape: str) -> None:
        out["args"] = getattr(instr, field)
    return dumper


def _dump_onbuild(instr: ins.Onbuild, out: dict, escape: str) -> None:
    out["args"] = _dump_one(instr.trigger, escape)


_DUMPERS = {
    ins.From: _dump_from,
    ins.Run: lambda i, out, e: _dump_command(i.command, out),
    ins.Cmd: lambda i, out, e: _dump_command(i.command, out),
    ins.Entrypoint: lambda i, out, e: _dump_command(i.command, out),
    ins.Healthcheck: lambda i, out, e: _dump_command(i.command, out),
    ins.Shell: lambda i, out, e: _dump_command(ins.ExecForm(i.argv), out),
    ins.Copy: _dump_list("copy"), ins.Add: _dump_list("copy"),
    ins.Volume: _dump_list("paths"), ins.Expose: _dump_list("ports"),
    ins.Env: _dump_pairs, ins.Label: _dump_pairs, ins.Arg: _dump_pairs,
    ins.Workdir: _dump_field("path"), ins.User: _dump_field("user"),
    ins.Maintainer: _dump_field("name"), ins.StopSignal: _dump_field("signal"),
    ins.Onbuild: _dump_onbuild,
}
