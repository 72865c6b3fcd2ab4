"""Resource limits of a RUN step or a container, as docker's flags give them (pure).

`--memory 512m`, `--pids-limit 100` and `--cpus 1.5` are parsed here into one frozen `Limits`
value; cgroups.py applies it. Build steps get DEFAULT_BUILD_PIDS unless told otherwise, so
that a fork bomb in a RUN stops at the step's cgroup instead of filling the host's pid table.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any

from minibuild.errors import SandboxError
from minibuild.text import parse_size

# A build step's pids limit when none is given. pids.max counts threads, so a JVM, a Go
# toolchain or `make -j` on a big machine needs hundreds; podman's default is 2048 (CRI-O's
# 1024), which threaded builds are known to hit. 4096 (podman's first default, and in the
# range systemd gives a unit) leaves them room while a fork bomb stays far below the host's
# pid_max (32768 by default on small machines, 4194304 on large ones).
DEFAULT_BUILD_PIDS = 4096
MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum: less cannot even start a shell reliably
CPU_PERIOD = 100_000  # microseconds; docker's and the kernel's default CFS period


class LimitError(SandboxError):
    """A limit flag with a value we cannot apply."""


@dataclass(frozen=True)
class Limits:
    """What the step's or container's cgroup enforces; None means unlimited."""

    memory: int | None = None  # bytes (swap as much again, as docker's default)
    pids: int | None = None  # tasks (processes and threads)
    cpus: float | None = None  # CPUs' worth of time per period
    freezer: bool = False  # a container: `pause` and `commit` freeze its cgroup
    # limits that are skipped, not refused, where their controller is missing (a default)
    optional: frozenset[str] = frozenset()

    @property
    def controllers(self) -> frozenset[str]:
        """The cgroup controllers these limits need."""
        wanted = {"memory": self.memory, "pids": self.pids, "cpu": self.cpus}
        names = {name for name, value in wanted.items() if value is not None}
        return frozenset(names | ({"freezer"} if self.freezer else set()))

    def cpu_quota(self) -> int | None:
        """CFS quota in microseconds per CPU_PERIOD, or None."""
        return None if self.cpus is None else max(1000, round(self.cpus * CPU_PERIOD))

    def to_json(self) -> dict[str, Any]:
        """The limits a container record keeps (docker's HostConfig names)."""
        return {"Memory": self.memory, "PidsLimit": self.pids, "NanoCpus":
                None if self.cpus is None else round(self.cpus * 1e9)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, *, freezer: bool = False) -> Limits:
        """Inverse of to_json (an old record without limits: none)."""
        data = data or {}
        nano = data.get("NanoCpus")
        return cls(memory=data.get("Memory"), pids=data.get("PidsLimit"),
                   cpus=None if nano is None else nano / 1e9, freezer=freezer)

    def with_default_pids(self, pids: int = DEFAULT_BUILD_PIDS) -> Limits:
        """A build's limits: a default pids limit (skipped where no pids controller exists)
        unless one was given (`--pids-limit -1` gives none)."""
        if self.pids is not None or "pids" in self.optional:
            return self
        return replace(self, pids=pids, optional=self.optional | {"pids"})


def parse_limits(memory: str | None = None, pids: int | None = None,
                 cpus: str | None = None) -> Limits:
    """docker's --memory, --pids-limit and --cpus; LimitError names the flag that is wrong.

    `--pids-limit 0` or `-1` means unlimited, as docker reads it (and then no default applies).
    """
    limits = Limits(memory=_memory(memory) if memory else None, cpus=_cpus(cpus) if cpus else None)
    if pids is None:
        return limits
    if pids > 0:
        return replace(limits, pids=pids)
    if pids in (0, -1):
        return replace(limits, optional=frozenset({"pids"}))  # explicitly unlimited
    raise LimitError(f"--pids-limit {pids}: want a positive number, or -1 for unlimited")


def _memory(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise LimitError(f"--memory {text}: {exc}") from None
    if size < MIN_MEMORY:
        raise LimitError(f"--memory {text}: the minimum is 6m")
    return size


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    available = os.cpu_count() or 1
    if not math.isfinite(value) or not 0.01 <= value <= available:
        raise LimitError(f"--cpus {text}: want a number of CPUs from 0.01 to {available} "
                         f"(this machine has {available}), such as 1.5")
    return value
