"""Freezing a container's cgroup, and finding the cgroups a running container sits in.

`pause`, `unpause` and `commit` freeze the container's whole cgroup (v2 `cgroup.freeze`, else
the v1 freezer's `freezer.state`): unlike SIGSTOP sent to a list of pids, a process forked
meanwhile is born frozen, so nothing in the container escapes (Docker's fix for
CVE-2018-15664). `exec` joins the same cgroups, so what it starts is limited and frozen too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import SandboxError
from minibuild.sandbox.cgroups import is_ours, read_file
from minibuild.sandbox.hierarchy import Hierarchy, hierarchies


def cgroups_of(pid: int, found: Iterable[Hierarchy] | None = None) -> list[tuple[Hierarchy, Path]]:
    """The step or container cgroups (minibuild's own) a process sits in, one per hierarchy."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = list(hierarchies() if found is None else found)
    out = []
    for line in lines:
        _, names, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        h = next((h for h in found if h.member(names)), None)
        where = h.locate(path) if h is not None and is_ours(path) else None
        if where is not None and where.is_dir():
            out.append((h, where))
    return out


@dataclass(frozen=True)
class Freezer:
    """The freezer of one cgroup (v2 `cgroup.freeze` or a v1 freezer cgroup)."""

    path: Path
    version: int

    def frozen(self) -> bool:
        """Whether the cgroup is frozen (or being frozen)."""
        if self.version == 2:
            return read_file(self.path / "cgroup.freeze").strip() == "1"
        return read_file(self.path / "freezer.state").strip() in ("FROZEN", "FREEZING")

    def freeze(self, seconds: float = 10.0) -> None:
        """Freeze every process of the cgroup, and wait until the kernel says they all are."""
        if self.version == 2:
            _write(self.path / "cgroup.freeze", "1")
            done = lambda: "frozen 1" in read_file(self.path / "cgroup.events").splitlines()  # noqa: E731
        else:
            done = lambda: self._v1_state("FROZEN") == "FROZEN"  # noqa: E731
        deadline, pause = time.monotonic() + seconds, 0.001
        while not done():
            if time.monotonic() > deadline:
                self.thaw()
                raise SandboxError(f"cannot freeze {self.path}: its processes did not stop "
                                   f"within {seconds:g} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _v1_state(self, wanted: str) -> str:
        """Ask the v1 freezer again (a FREEZING cgroup finishes only when asked), read back."""
        _write(self.path / "freezer.state", wanted)
        return read_file(self.path / "freezer.state").strip()

    def thaw(self) -> None:
        """Let the processes run again."""
        if self.version == 2:
            _write(self.path / "cgroup.freeze", "0")
        else:
            _write(self.path / "freezer.state", "THAWED")


def freezer_of(pid: int) -> Freezer | None:
    """The freezer of the container whose init is `pid`, or None (no freezer cgroup: a
    container started by an older minibuild, or a host without one)."""
    for h, path in cgroups_of(pid):
        if h.version == 2 and (path / "cgroup.freeze").exists():
            return Freezer(path, 2)
        if h.version == 1 and "freezer" in h.controllers:
            return Freezer(path, 1)
    return None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc.strerror}") from exc
