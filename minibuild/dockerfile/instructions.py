"""Typed Buildfile instructions: frozen values with their source location, nothing else.

Arguments are kept RAW (quotes, escapes and `$vars` as written): expansion depends on the
ARG/ENV scope at build time, which is the planner's business (shell.py does the work).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Location:
    """Where an instruction starts: 1-based line and column of its first line; `end_line` is
    its last line (continuations, heredoc bodies) when it spans several, else None."""

    file: str
    line: int
    column: int = 1
    end_line: int | None = None

    def __str__(self) -> str:
        if self.end_line is not None:
            return f"{self.file}:{self.line}-{self.end_line}"
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class ExecForm:
    """`["prog", "arg"]`: the decoded JSON array, run without a shell."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class ShellForm:
    """Shell form: the text after the flags, continuations joined as Docker joins them."""

    text: str


Command = Union[ExecForm, ShellForm]


@dataclass(frozen=True)
class Heredoc:
    """A `<<EOF` body. `content` is final: leading tabs are already stripped for `<<-`."""

    delimiter: str
    content: str
    expand: bool  # False when the delimiter was quoted (<<"EOF" / <<'EOF')
    chomp_tabs: bool  # the marker was <<-


@dataclass(frozen=True)
class InstructionBase:
    """Fields every instruction has; `original` is the line as written, continuations joined."""

    location: Location
    flags: tuple[str, ...]
    original: str

    @property
    def keyword(self) -> str:
        """The instruction name in upper case (`RUN`, `COPY`, ...)."""
        return type(self).__name__.upper()


@dataclass(frozen=True)
class From(InstructionBase):
    """`FROM [--platform=...] image [AS name]` (raw words, expanded later)."""

    image: str
    stage_name: str | None


@dataclass(frozen=True)
class Run(InstructionBase):
    """`RUN command`; heredoc bodies (if any) in order of their markers."""

    command: Command
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class Cmd(InstructionBase):
    """`CMD command`."""

    command: Command


@dataclass(frozen=True)
class Entrypoint(InstructionBase):
    """`ENTRYPOINT command`."""

    command: Command


@dataclass(frozen=True)
class Shell(InstructionBase):
    """`SHELL ["exe", "-c"]` (exec form only)."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class Copy(InstructionBase):
    """`COPY src... dest`: raw words or a decoded JSON array.

    A heredoc source keeps its marker word (`<<EOF`) in `sources`, in place, as Docker's parser
    does; `paths` gives the real paths only and `heredocs` the bodies, in marker order.
    """

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[Heredoc, ...] = ()
    json_form: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        """The sources that are paths (heredoc markers left out)."""
        if not self.heredocs:
            return self.sources
        return tuple(s for s in self.sources if not is_heredoc_marker(s))


@dataclass(frozen=True)
class Add(Copy):
    """`ADD src... dest`: same shape as COPY."""


@dataclass(frozen=True)
class Env(InstructionBase):
    """`ENV k=v ...`; keys and values raw (quotes kept) so expansion can honour '...' vs "..."."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arg(InstructionBase):
    """`ARG name[=default] ...`; the value is None for a bare `ARG name`."""

    pairs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Label(InstructionBase):
    """`LABEL k=v ...`; raw like ENV."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Workdir(InstructionBase):
    """`WORKDIR path` (the rest of the line)."""

    path: str


@dataclass(frozen=True)
class User(InstructionBase):
    """`USER user[:group]`."""

    user: str


@dataclass(frozen=True)
class Maintainer(InstructionBase):
    """`MAINTAINER name` (deprecated, kept for history)."""

    name: str


@dataclass(frozen=True)
class StopSignal(InstructionBase):
    """`STOPSIGNAL signal`."""

    signal: str


@dataclass(frozen=True)
class Expose(InstructionBase):
    """`EXPOSE port[/proto] ...` (raw words)."""

    ports: tuple[str, ...]


@dataclass(frozen=True)
class Volume(InstructionBase):
    """`VOLUME path ...` or `VOLUME ["path", ...]`."""

    paths: tuple[str, ...]
    json_form: bool = False


@dataclass(frozen=True)
class Healthcheck(InstructionBase):
    """`HEALTHCHECK [--options] CMD command`; command None for `HEALTHCHECK NONE`."""

    command: Command | None


@dataclass(frozen=True)
class Onbuild(InstructionBase):
    """`ONBUILD instruction`: the trigger, parsed."""

    trigger: "Instruction"


Instruction = Union[
    From, Run, Cmd, Entrypoint, Shell, Copy, Add, Env, Arg, Label, Workdir, User,
    Maintainer, StopSignal, Expose, Volume, Healthcheck, Onbuild,
]

# A heredoc marker word, as BuildKit recognises it: optional fd, <<, optional -, a word.
HEREDOC_MARKER = re.compile(r"^(\d*)<<(-?)([^<]+)$")


def is_heredoc_marker(word: str) -> bool:
    """True for a word such as `<<EOF`, `<<-"EOF"` or `3<<'X'`."""
    return HEREDOC_MARKER.match(word) is not None


def flag_values(instr: InstructionBase, name: str) -> tuple[str, ...]:
    """Every value given for `--name` (e.g. several `--mount`), quotes removed; bare flag -> ""."""
    values = []
    for flag in instr.flags:
        key, eq, value = flag[2:].partition("=")
        if key == name:
            values.append(_strip_quotes(value) if eq else "")
    return tuple(values)


def flag_value(instr: InstructionBase, name: str) -> str | None:
    """`--from=build` -> flag_value(i, "from") == "build"; a bare `--link` -> ""; missing -> None.

    When a flag is repeated the last one wins.
    """
    values = flag_values(instr, name)
    return values[-1] if values else None


def _strip_quotes(value: str) -> str:
    # Docker's flag scanner drops quote characters and keeps what they enclose.
    out, quote = [], ""
    for ch in value:
        if quote:
            if ch == quote:
                quote = ""
            else:
                out.append(ch)
        elif ch in "\"'":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)
