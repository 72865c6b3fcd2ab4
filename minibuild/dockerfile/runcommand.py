"""What a RUN executes and how `docker history` shows it (pure; the build's steps.py runs it).

- Shell form goes through SHELL; heredocs are folded into the script as BuildKit folds them: a
  command that is only heredocs runs their bodies, anything else gets the heredocs written after
  it for the shell to read.
- A RUN that is one heredoc whose body starts with `#!` is a script run by that interpreter, as
  the reference's Here-Documents section says: BuildKit puts the body in a file under
  /dev/pipes/ and runs `/bin/sh -c /dev/pipes/EOF` (the kernel honours the `#!`); so do we.
- The history text carries BuildKit's `|N K=V ...` prefix naming the stage's ARGs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from minibuild.dockerfile import metadata
from minibuild.dockerfile.instructions import (ExecForm, Run, ShellForm, flag_value,
                                               is_heredoc_marker)
from minibuild.errors import BuildfileError
from minibuild.oci.image import ContainerConfig

PIPES = "/dev/pipes"  # where a shebang heredoc's script is, inside the RUN's sandbox
SECURITY_MODES = ("sandbox", "insecure")
_ONLY_HEREDOCS = re.compile(r"^\s*(<<-?\s*['\"]?\w+['\"]?\s*)+$")


@dataclass(frozen=True)
class RunCommand:
    """A RUN ready to execute: argv, history text, and the files to put in /dev/pipes/."""

    argv: tuple[str, ...]
    created_by: str
    pipes: tuple[tuple[str, str], ...] = ()  # (file name, content): a shebang heredoc


def prepare(run: Run, scope: metadata.Scope, config: ContainerConfig) -> RunCommand:
    """The argv of a RUN (heredocs folded in) and its history text, as BuildKit makes them."""
    script = shebang_script(run)
    if script is not None:
        name, _ = script
        argv = scope.shell + (f"{PIPES}/{name}",)
        return RunCommand(argv, _history(argv, scope, config), (script,))
    command = run.command
    if isinstance(command, ShellForm) and run.heredocs:
        command = ShellForm(_folded(command.text, run))
    argv = metadata.command_argv(command, scope)
    if isinstance(command, ExecForm):  # our history keeps exec form as JSON (see README)
        text = metadata.describe_command("RUN", command)
        return RunCommand(argv, text.replace("RUN ", "RUN " + scope.history_args(config), 1))
    return RunCommand(argv, _history(argv, scope, config))


def security(run: Run) -> str:
    """RUN --security: `sandbox` (the default, a no-op) or `insecure` (every capability, as
    `docker run --privileged`; the build must allow security.insecure)."""
    value = flag_value(run, "security")
    if value is None:
        return "sandbox"
    if value not in SECURITY_MODES:
        raise BuildfileError.at(run, f"RUN --security={value}: want sandbox or insecure")
    return value


def key_extras(command: RunCommand, scope: metadata.Scope,
               config: ContainerConfig) -> dict[str, object]:
    """What a RUN's cache key holds besides argv, env, cwd, user and network, each only when
    present (the keys of other RUNs stay what they were): the /dev/pipes scripts (argv names
    only their path), the sandbox's hostname, the history's ARG prefix (so no entry written
    before it existed is reused with another history text)."""
    extras: dict[str, object] = {}
    if command.pipes:
        extras["pipes"] = [list(pipe) for pipe in command.pipes]
    if scope.hostname:
        extras["hostname"] = scope.hostname
    if scope.declared:
        extras["history_args"] = scope.history_args(config)
    return extras


def shebang_script(run: Run) -> tuple[str, str] | None:
    """(delimiter, body) when the RUN is exactly one heredoc whose body starts with `#!`."""
    if not isinstance(run.command, ShellForm) or len(run.heredocs) != 1:
        return None
    heredoc, words = run.heredocs[0], run.command.text.split()
    if len(words) != 1 or not is_heredoc_marker(words[0]) or not heredoc.content.startswith("#!"):
        return None
    if "/" in heredoc.delimiter or heredoc.delimiter in (".", ".."):
        return None  # not a file name: left to the shell, as any other heredoc
    return heredoc.delimiter, heredoc.content


def _folded(text: str, run: Run) -> str:
    """The shell script of a shell-form RUN with heredocs."""
    if _ONLY_HEREDOCS.match(text):
        return "".join(h.content for h in run.heredocs)
    # `RUN python3 <<EOF`: give the shell the heredoc it was written with
    bodies = "".join(f"{h.content}{'' if not h.content or h.content.endswith(chr(10)) else chr(10)}"
                     f"{h.delimiter}\n" for h in run.heredocs)
    return f"{text}\n{bodies}"


def _history(argv: tuple[str, ...], scope: metadata.Scope, config: ContainerConfig) -> str:
    return "RUN " + scope.history_args(config) + " ".join(argv)
