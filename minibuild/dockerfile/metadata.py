"""Pure: what the metadata instructions (ENV, LABEL, CMD, USER, ...) do to an image config."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Mapping

from minibuild.dockerfile import buildargs, shell as words
from minibuild.dockerfile.suggest import unknown_flag
from minibuild.errors import BuildfileError
from minibuild.oci.image import ContainerConfig
from minibuild.dockerfile.instructions import (Arg, Cmd, Entrypoint, Env, ExecForm, Expose, Healthcheck, Label,
                                    Maintainer, Onbuild, Shell, ShellForm, StopSignal, User,
                                    Volume)

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, Linux


@dataclass(frozen=True)
class Scope:
    """What a stage's instructions see besides the config: ARGs in scope, SHELL, escape char,
    and what the build's built-in args (buildargs.py) give every RUN."""

    args: tuple[tuple[str, str], ...] = ()
    shell: tuple[str, ...] = DEFAULT_SHELL
    escape: str = "\\"
    cmd_set_here: bool = False   # ENTRYPOINT resets an inherited CMD, not one set in this stage
    declared: tuple[str, ...] = ()  # the stage's ARG names, as declared (with a value or not)
    proxies: tuple[tuple[str, str], ...] = ()  # predefined proxy args the build was given
    hostname: str | None = None  # BUILDKIT_SANDBOX_HOSTNAME, for the RUN sandbox

    @classmethod
    def for_stage(cls, shell: tuple[str, ...], escape: str,
                  build_args: Mapping[str, str]) -> Scope:
        """A stage's scope before its first instruction."""
        return cls(shell=tuple(shell), escape=escape, proxies=buildargs.proxy_env(build_args),
                   hostname=build_args.get(buildargs.HOSTNAME) or None)

    def inheriting(self, base: Scope | None) -> Scope:
        """This scope with the ARGs of the stage it is based on (the reference: an ARG "declared
        within a build stage is automatically inherited by other stages based on that stage")."""
        if base is None:
            return self
        return replace(self, args=base.args, declared=base.declared)

    def unkeyed_env(self, config: ContainerConfig) -> tuple[tuple[str, str], ...]:
        """The proxy args no ARG declared and no ENV sets: in a RUN's environment, but never in
        its cache key or history (the reference's Predefined ARGs)."""
        taken = {k for k, _ in self.args} | set(config.env_dict())
        return tuple((k, v) for k, v in self.proxies if k not in taken)

    def history_args(self, config: ContainerConfig) -> str:
        """BuildKit's prefix of a RUN's history text: `|N K=V ... ` for the N ARGs the stage
        declared (their values as the RUN sees them, ENV winning), "" when there is none."""
        if not self.declared:
            return ""
        env = self.expansion_env(config)
        names = list(dict.fromkeys(self.declared))
        return f"|{len(names)} " + "".join(f"{name}={env.get(name, '')} " for name in names)

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

    def with_arg(self, name: str, value: str | None) -> Scope:
        """A scope with one more ARG declared (and its value, unless None)."""
        scope = replace(self, declared=self.declared + (name,))
        if value is None:
            return scope
        args = [(k, v) for k, v in self.args if k != name] + [(name, value)]
        return replace(scope, args=tuple(args))


def base_config(config: ContainerConfig, scratch: bool) -> ContainerConfig:
    """The config a stage starts from, as BuildKit makes it: `FROM scratch` is its empty image
    (Docker's default PATH, WorkingDir /), and a base without PATH in its env gets that PATH."""
    if scratch:
        config = replace(config, working_dir=config.working_dir or "/")
    if "PATH" not in config.env_dict():
        config = config.with_env("PATH", DEFAULT_PATH)
    return config


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


def inline_files(instruction, env: Mapping[str, str]) -> tuple[tuple[str, bytes], ...]:
    """The heredoc sources of a COPY/ADD as (name, content): variables expanded as a shell
    expands a here-document, unless the delimiter was quoted (`<<"EOF"`)."""
    return tuple((h.delimiter, (words.expand_heredoc(h.content, env, location=instruction.location)
                                if h.expand else h.content).encode())
                 for h in instruction.heredocs)


def _expand(word: str, env: Mapping[str, str], scope: Scope, instruction) -> str:
    return words.expand(word, env, escape=scope.escape, location=instruction.location)


def _fail(instruction, message: str) -> BuildfileError:
    return BuildfileError.at(instruction, message)


@dataclass(frozen=True)
class _Input:
    """One metadata instruction with what it sees."""

    instruction: object
    config: ContainerConfig
    scope: Scope
    env: Mapping[str, str]
    build_args: Mapping[str, str]
    global_args: Mapping[str, str | None]

    def expand(self, word: str) -> str:
        """Expand one word with the stage's variables, errors at the instruction's line."""
        return _expand(word, self.env, self.scope, self.instruction)


Applied = tuple[ContainerConfig, Scope, "str | None"]


def apply(instruction, config: ContainerConfig, scope: Scope,
          build_args: Mapping[str, str], global_args: Mapping[str, str | None]) -> Applied:
    """Apply one metadata instruction: (new config, new scope, history text or None)."""
    handler = _HANDLERS.get(type(instruction))
    if handler is None:
        raise _fail(instruction, f"{type(instruction).__name__.upper()} is not a metadata instruction")
    return handler(_Input(instruction, config, scope, scope.expansion_env(config), build_args,
                          global_args))


def _env(i: _Input) -> Applied:
    values = [(k, i.expand(v)) for k, v in i.instruction.pairs]  # all see the old values
    config = i.config
    for key, value in values:
        config = config.with_env(key, value)
    return config, i.scope, "ENV " + " ".join(f"{k}={v}" for k, v in values)


def _arg(i: _Input) -> Applied:
    scope, shown = i.scope, []
    for name, default in i.instruction.pairs:
        value = _arg_value(name, default, i.build_args, i.global_args, scope, i.config, i.instruction)
        scope = scope.with_arg(name, value)
        shown.append(name if value is None else f"{name}={value}")
    return i.config, scope, "ARG " + " ".join(shown)  # BuildKit's history text


def _label(i: _Input) -> Applied:
    config, shown = i.config, []
    for key, value in i.instruction.pairs:
        key, value = i.expand(key), i.expand(value)
        config = config.with_label(key, value)
        shown.append(f"{key}={value}")
    return config, i.scope, "LABEL " + " ".join(shown)


def _expose(i: _Input) -> Applied:
    found = _ports(i.instruction.ports, i.env, i.scope, i.instruction)
    merged = tuple(sorted(set(i.config.exposed_ports) | set(found)))
    return replace(i.config, exposed_ports=merged), i.scope, "EXPOSE " + " ".join(found)


def _volume(i: _Input) -> Applied:
    if i.instruction.json_form:  # each element is one path, spaces and all
        found = [i.expand(raw) for raw in i.instruction.paths]
    else:
        found = [p for raw in i.instruction.paths for p in words.expand_words(
            raw, i.env, escape=i.scope.escape, location=i.instruction.location)]
    if not found:
        raise _fail(i.instruction, "VOLUME needs at least one path")
    merged = tuple(sorted(set(i.config.volumes) | set(found)))
    return replace(i.config, volumes=merged), i.scope, "VOLUME " + str(found).replace("'", '"')


def _user(i: _Input) -> Applied:
    value = i.expand(i.instruction.user)
    return replace(i.config, user=value), i.scope, f"USER {value}"


def _stop_signal(i: _Input) -> Applied:
    value = i.expand(i.instruction.signal)
    return replace(i.config, stop_signal=value), i.scope, f"STOPSIGNAL {value}"


def _cmd(i: _Input) -> Applied:
    scope = replace(i.scope, cmd_set_here=True)
    command = i.instruction.command
    return replace(i.config, cmd=command_argv(command, scope)), scope, describe_command("CMD", command)


def _entrypoint(i: _Input) -> Applied:
    cmd = i.config.cmd if i.scope.cmd_set_here else None  # an inherited CMD is reset
    command = i.instruction.command
    return (replace(i.config, entrypoint=command_argv(command, i.scope), cmd=cmd), i.scope,
            describe_command("ENTRYPOINT", command))


def _shell(i: _Input) -> Applied:
    argv = tuple(i.instruction.argv)
    if not argv:
        raise _fail(i.instruction, "SHELL needs a JSON array with at least one element")
    return (replace(i.config, shell=argv), replace(i.scope, shell=argv),
            describe_command("SHELL", ExecForm(argv)))


def _healthcheck(i: _Input) -> Applied:
    command = i.instruction.command
    text = "NONE" if command is None else describe_command("", command).strip()
    return replace(i.config, healthcheck=healthcheck(i.instruction, i.scope)), i.scope, f"HEALTHCHECK {text}"


def _maintainer(i: _Input) -> Applied:
    return i.config, i.scope, f"MAINTAINER {i.instruction.name}"


def _onbuild(i: _Input) -> Applied:
    trigger = i.instruction.trigger
    if trigger.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
        raise _fail(i.instruction, f"{trigger.keyword} isn't allowed as an ONBUILD trigger")
    return (replace(i.config, onbuild=i.config.onbuild + (trigger.original,)), i.scope,
            f"ONBUILD {trigger.original}")


_HANDLERS = {Env: _env, Arg: _arg, Label: _label, Expose: _expose, Volume: _volume, User: _user,
             StopSignal: _stop_signal, Cmd: _cmd, Entrypoint: _entrypoint, Shell: _shell,
             Healthcheck: _healthcheck, Maintainer: _maintainer, Onbuild: _onbuild}


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
            raise _fail(instruction, unknown_flag("HEALTHCHECK", key, names))
        try:
            fields[names[key]] = int(value) if key == "retries" else parse_duration(value)
        except ValueError:
            raise _fail(instruction, f"invalid value {value!r} for --{key}") from None
    return tuple(sorted(fields.items()))


def resolve_workdir(current: str, path: str) -> str:
    """WORKDIR: relative paths chain onto the current one."""
    joined = posixpath.join(current or "/", path)
    return posixpath.normpath(joined) if joined != "/" else "/"
