"""Pure: what the metadata instructions (ENV, LABEL, CMD, USER, ...) do to an image config."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Mapping

from minibuild import words
from minibuild.errors import BuildfileError
from minibuild.image import ContainerConfig
from minibuild.instructions import (Arg, Cmd, Entrypoint, Env, ExecForm, Expose, Healthcheck, Label,
                                    Maintainer, Onbuild, Shell, ShellForm, StopSignal, User,
                                    Volume)

DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class Scope:
    """What a stage's instructions see besides the config: ARGs in scope, SHELL, escape char."""

    args: tuple[tuple[str, str], ...] = ()
    shell: tuple[str, ...] = DEFAULT_SHELL
    escape: str = "\\"
    cmd_set_here: bool = False   # ENTRYPOINT resets an inherited CMD, not one set in this stage

    def expansion_env(self, config: ContainerConfig) -> dict[str, str]:
        """Variables for word expansion: ARGs, overridden by ENV of the same name."""
        env = dict(self.args)
        env.update(config.env_dict())
        return env

    def process_env(self, config: ContainerConfig) -> tuple[tuple[str, str], ...]:
        """The environment of a RUN: the image ENV plus ARGs not shadowed by ENV."""
        env = config.env_dict()
        extra = [(k, v) for k, v in self.args if k not in env]
        return tuple(extra) + tuple(env.items())

    def with_arg(self, name: str, value: str) -> Scope:
        """A scope with one more ARG value."""
        args = [(k, v) for k, v in self.args if k != name] + [(name, value)]
        return replace(self, args=tuple(args))


def command_argv(command, scope: Scope) -> tuple[str, ...]:
    """Exec form as is; shell form through the SHELL."""
    if isinstance(command, ExecForm):
        return tuple(command.argv)
    return scope.shell + (command.text,)


def describe_command(keyword: str, command) -> str:
    """History text docker writes: `RUN /bin/sh -c make` / `CMD ["sh"]`."""
    import json

    if isinstance(command, ExecForm):
        return f"{keyword} {json.dumps(list(command.argv))}"
    return f"{keyword} {command.text}"


def _expand(word: str, env: Mapping[str, str], scope: Scope, instruction) -> str:
    return words.expand(word, env, escape=scope.escape, location=instruction.location)


def _fail(instruction, message: str) -> BuildfileError:
    loc = instruction.location
    return BuildfileError(message, file=loc.file, line=loc.line, column=loc.column)


def apply(instruction, config: ContainerConfig, scope: Scope,
          build_args: Mapping[str, str], global_args: Mapping[str, str | None]):
    """Apply one metadata instruction: (new config, new scope, history text or None)."""
    env = scope.expansion_env(config)
    match instruction:
        case Env(pairs=pairs):
            values = [(k, _expand(v, env, scope, instruction)) for k, v in pairs]
            for key, value in values:
                config = config.with_env(key, value)
            return config, scope, "ENV " + " ".join(f"{k}={v}" for k, v in values)
        case Arg(pairs=pairs):
            for name, default in pairs:
                value = _arg_value(name, default, build_args, global_args, scope, config, instruction)
                if value is not None:
                    scope = scope.with_arg(name, value)
            return config, scope, None
        case Label(pairs=pairs):
            shown = []
            for key, value in pairs:
                key, value = _expand(key, env, scope, instruction), _expand(value, env, scope, instruction)
                config = config.with_label(key, value)
                shown.append(f"{key}={value}")
            return config, scope, "LABEL " + " ".join(shown)
        case Expose(ports=ports):
            found = _ports(ports, env, scope, instruction)
            merged = tuple(sorted(set(config.exposed_ports) | set(found)))
            return replace(config, exposed_ports=merged), scope, "EXPOSE " + " ".join(found)
        case Volume(paths=paths):
            if instruction.json_form:  # each element is one path, spaces and all
                found = [_expand(raw, env, scope, instruction) for raw in paths]
            else:
                found = [p for raw in paths for p in words.expand_words(
                    raw, env, escape=scope.escape, location=instruction.location)]
            if not found:
                raise _fail(instruction, "VOLUME needs at least one path")
            merged = tuple(sorted(set(config.volumes) | set(found)))
            return replace(config, volumes=merged), scope, "VOLUME " + str(found).replace("'", '"')
        case User(user=user):
            value = _expand(user, env, scope, instruction)
            return replace(config, user=value), scope, f"USER {value}"
        case StopSignal(signal=signal):
            value = _expand(signal, env, scope, instruction)
            return replace(config, stop_signal=value), scope, f"STOPSIGNAL {value}"
        case Cmd(command=command):
            scope = replace(scope, cmd_set_here=True)
            return (replace(config, cmd=command_argv(command, scope)), scope,
                    describe_command("CMD", command))
        case Entrypoint(command=command):
            cmd = config.cmd if scope.cmd_set_here else None
            return (replace(config, entrypoint=command_argv(command, scope), cmd=cmd), scope,
                    describe_command("ENTRYPOINT", command))
        case Shell(argv=argv):
            if not argv:
                raise _fail(instruction, "SHELL needs a JSON array with at least one element")
            return replace(config, shell=tuple(argv)), replace(scope, shell=tuple(argv)), \
                describe_command("SHELL", ExecForm(tuple(argv)))
        case Healthcheck():
            check = healthcheck(instruction, scope)
            return replace(config, healthcheck=check), scope, "HEALTHCHECK " + (
                "NONE" if instruction.command is None else describe_command("", instruction.command).strip())
        case Maintainer(name=name):
            return config, scope, f"MAINTAINER {name}"
        case Onbuild(trigger=trigger):
            if trigger.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
                raise _fail(instruction, f"{trigger.keyword} isn't allowed as an ONBUILD trigger")
            return (replace(config, onbuild=config.onbuild + (trigger.original,)), scope,
                    f"ONBUILD {trigger.original}")
    raise _fail(instruction, f"{type(instruction).__name__.upper()} is not a metadata instruction")


def _arg_value(name, default, build_args, global_args, scope, config, instruction) -> str | None:
    """--build-arg wins, then the default, then the global ARG of that name (re-declared)."""
    if name in build_args:
        return build_args[name]
    if default is not None:
        return _expand(default, scope.expansion_env(config), scope, instruction)
    return global_args.get(name)


_PORT = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")


def _ports(ports, env, scope, instruction) -> list[str]:
    found = []
    for raw in ports:
        for port in words.expand_words(raw, env, escape=scope.escape, location=instruction.location):
            if not _PORT.match(port.lower()):
                raise _fail(instruction, f"invalid port {port!r} in EXPOSE (want PORT[/tcp|udp|sctp])")
            found.append(port.lower() if "/" in port else f"{port}/tcp")
    if not found:
        raise _fail(instruction, "EXPOSE needs at least one port")
    return found


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """A Go duration (`30s`, `1m30s`) in nanoseconds; ValueError if it does not parse."""
    pos, total = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            raise ValueError(text)
        total += int(float(match.group(1)) * _UNITS[match.group(2)])
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(text)
    return total


def healthcheck(instruction: Healthcheck, scope: Scope) -> tuple[tuple[str, object], ...]:
    """The config's Healthcheck object (Test plus durations in ns and Retries)."""
    if instruction.command is None:
        return (("Test", ["NONE"]),)
    if isinstance(instruction.command, ShellForm):
        test = ["CMD-SHELL", instruction.command.text]
    else:
        test = ["CMD", *instruction.command.argv]
    fields: dict[str, object] = {"Test": test}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval", "retries": "Retries"}
    for flag in instruction.flags:
        key, _, value = flag.removeprefix("--").partition("=")
        if key not in names:
            raise _fail(instruction, f"unknown flag --{key} for HEALTHCHECK")
        try:
            fields[names[key]] = int(value) if key == "retries" else parse_duration(value)
        except ValueError:
            raise _fail(instruction, f"invalid value {value!r} for --{key}") from None
    return tuple(sorted(fields.items()))


def resolve_workdir(current: str, path: str) -> str:
    """WORKDIR: relative paths chain onto the current one."""
    joined = posixpath.join(current or "/", path)
    return posixpath.normpath(joined) if joined != "/" else "/"
