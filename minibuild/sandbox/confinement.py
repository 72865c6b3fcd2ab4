"""What confines a step's or a container's command besides namespaces and capabilities.

`SecurityOptions` is what the user chose (docker's `--security-opt seccomp=unconfined|PATH` and
`no-new-privileges`); `Confinement` is that choice made ready in the parent, once per build or
container start: the seccomp program compiled, Landlock probed, the host's executables known.
The forked X then only applies it, in runc's order: without no_new_privs, loading a filter
needs CAP_SYS_ADMIN, so seccomp goes on before the capabilities are dropped; with it, after the
switch to the user, right before execve.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from minibuild.errors import SandboxError
from minibuild.sandbox import landlock, linux, seccomp
from minibuild.sandbox.process import STEP_CAPABILITIES

DEFAULT, UNCONFINED = "default", "unconfined"
_TRUE = ("", "1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool, as docker
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


@dataclass(frozen=True)
class SecurityOptions:
    """The user's choice: a seccomp profile and no_new_privs (docker's defaults)."""

    seccomp: str = DEFAULT  # "default", "unconfined", or the JSON text of a profile
    no_new_privileges: bool = False  # docker's default: setuid binaries keep working

    def to_json(self) -> dict[str, object]:
        """As a container record stores it."""
        return {"seccomp": self.seccomp, "no_new_privileges": self.no_new_privileges}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> SecurityOptions:
        """Inverse of to_json; a record without it gets the defaults."""
        data = data or {}
        return cls(str(data.get("seccomp") or DEFAULT), bool(data.get("no_new_privileges")))


def parse_security_opts(values: Iterable[str]) -> SecurityOptions:
    """`--security-opt` values (KEY=VALUE or docker's older KEY:VALUE); the last one wins."""
    options = SecurityOptions()
    for text in values:
        key, value = _split(text)
        if key == "seccomp" and value:
            options = SecurityOptions(_profile(value), options.no_new_privileges)
        elif key == "no-new-privileges" and value in _TRUE + _FALSE:
            options = SecurityOptions(options.seccomp, value in _TRUE)
        else:
            raise SandboxError(f"invalid --security-opt {text!r}",
                               hint="supported: seccomp=unconfined, seccomp=PROFILE.json, "
                                    "no-new-privileges[=true|false]")
    return options


def _split(text: str) -> tuple[str, str]:
    at = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=len(text))
    return text[:at], text[at + 1:]


def _profile(value: str) -> str:
    """`unconfined`, or a profile file's text (checked to be JSON now, compiled later)."""
    if value == UNCONFINED:
        return UNCONFINED
    try:
        with open(value, encoding="utf-8") as f:
            text = f.read()
        json.loads(text)
    except OSError as exc:
        raise SandboxError(f"seccomp profile {value}: {exc.strerror}") from None
    except ValueError as exc:
        raise SandboxError(f"seccomp profile {value} is not valid JSON: {exc}") from None
    return text


@dataclass(frozen=True)
class Confinement:
    """The options made ready for X: compiled, probed, with the host files it must not run."""

    program: seccomp.Program | None
    no_new_privileges: bool
    landlock: bool  # whether the kernel has it: execve only beneath the root
    host_executables: frozenset[tuple[int, int]]  # (st_dev, st_ino) of host interpreters

    def before_drop(self) -> None:
        """In X while it still holds CAP_SYS_ADMIN: Landlock, and seccomp unless NNP."""
        if self.landlock:
            landlock.execute_only_beneath("/")
        if self.program is not None and not self.no_new_privileges:
            self.program.load()

    def after_drop(self) -> None:
        """In X as the user, right before execve: no_new_privs, then seccomp under it."""
        if self.no_new_privileges:
            linux.no_new_privs()
            if self.program is not None:
                self.program.load()


@functools.lru_cache(maxsize=8)
def prepare(options: SecurityOptions, host_pids: tuple[int, ...] = ()) -> Confinement:
    """Compile and probe, in the parent; once per process for the same arguments. The host
    executables are our interpreter's and those of `host_pids` (for exec, the container's
    init, started by another minibuild that may run another Python)."""
    program = None
    if options.seccomp != UNCONFINED:
        text = seccomp.default_profile() if options.seccomp == DEFAULT else options.seccomp
        program = seccomp.compile_profile(text, STEP_CAPABILITIES)
    return Confinement(program, options.no_new_privileges, landlock.available(),
                       frozenset(_identity(f"/proc/{pid}/exe") for pid in ("self", *host_pids)))


def _identity(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SandboxError(f"cannot stat {path}: {exc.strerror}") from None
    return st.st_dev, st.st_ino
