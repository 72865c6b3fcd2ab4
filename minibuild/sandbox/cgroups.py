"""The cgroup of one RUN step or container: made before the step starts, removed after it.

Each controller a `Limits` needs is taken from cgroup v2 where the mounted cgroup2 hierarchy
offers it (the freezer: `cgroup.freeze`, a core v2 file), else from its v1 hierarchy. In each
hierarchy used, the step's cgroup is `<minibuild's own cgroup>/minibuild/<name>`: nested under
the cgroup minibuild runs in (as runc reads a relative cgroupsPath), so limits placed on the
caller (a systemd unit, a CI job) keep holding for its builds. On cgroup v2 a controller can
only be enabled below a cgroup without processes; when ours has some, the parent is the
hierarchy's root `minibuild/` instead (docker's and podman's cgroupfs place).

The sandbox's parent moves its helpers C and I into the cgroup while they set up the root (a
move waits for an RCU grace period, ~10 ms, unless another happened just before: done in
parallel it costs the step almost nothing), and I forks the command only once both are in, so
everything the step starts is counted from its first fork; `exec` moves itself in (`enter`).
A cgroup's name is `PID-START-RANDOM` of the process that made it, and the `minibuild/` parent
goes when its last cgroup does. After a SIGKILL of minibuild its empty cgroups stay behind; the
next minibuild that makes a cgroup removes every empty one whose maker is gone (`sweep`).

Rootless, the hierarchies belong to the host's root unless a cgroup v2 subtree was delegated to
the user (our own cgroup writable): there every controller is optional, so a step runs with what
can be made (often nothing) instead of failing; the CLI warns once about flags it cannot apply
(`unavailable`), as rootless podman does on cgroup v1.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from minibuild.fs import idmap
from minibuild.sandbox.hierarchy import Hierarchy, hierarchies
from minibuild.sandbox.limits import CPU_PERIOD, LimitError, Limits

PARENT = "minibuild"
_NAME = re.compile(r"(\d+)-(\d+)-[0-9a-f]+")
_V2_CORE = frozenset({"freezer"})  # v2 files every cgroup has: nothing to enable


def read_file(path: Path) -> str:
    """A cgroup file's text ("" when it cannot be read: the cgroup went, or the file is not there)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    """Write a cgroup file with one write(2), as the kernel wants it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


# -- where each controller comes from ---------------------------------------------------------


def _parents(h: Hierarchy) -> list[Path]:
    """Where minibuild's cgroups may go in a hierarchy, best first."""
    if h.own is None:
        return [h.mount / PARENT] if h.version == 2 else []
    own = h.dir(h.own) / PARENT
    return [own] if h.version == 1 or own == h.mount / PARENT else [own, h.mount / PARENT]


def _ready(h: Hierarchy, parent: Path, controllers: frozenset[str]) -> bool:
    """Make the parent; on v2, enable the controllers from the root down to the parent's
    children. False when the hierarchy refuses (e.g. EBUSY: a v2 cgroup holding processes
    cannot hand controllers down)."""
    try:
        parent.mkdir(exist_ok=True)
        if h.version == 1:
            return True
        wanted = controllers - _V2_CORE
        chain = [h.mount, *reversed([p for p in parent.parents if h.mount in p.parents]), parent]
        for level in chain if wanted else ():
            missing = wanted - set(read_file(level / "cgroup.subtree_control").split())
            if missing:
                _write(level / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    except OSError:
        return False
    return "freezer" not in controllers or (parent / "cgroup.freeze").exists()


def place(limits: Limits, found: Iterable[Hierarchy]) -> dict[str, tuple[Hierarchy, Path]]:
    """For each controller the limits need: its hierarchy and the parent dir to make cgroups in
    (all of one hierarchy's in the same parent: a process sits in one cgroup per hierarchy).

    LimitError for a needed controller that no hierarchy offers, unless it is optional.
    """
    found = list(found)
    wanted = sorted(limits.controllers)
    v2 = next((h for h in found if h.version == 2), None)
    placed: dict[str, tuple[Hierarchy, Path]] = {}
    on_v2 = frozenset(c for c in wanted if v2 and (c in v2.controllers or c in _V2_CORE))
    if v2 is not None and on_v2:
        parent = next((p for p in _parents(v2) if _ready(v2, p, on_v2)), None)
        placed.update({c: (v2, parent) for c in on_v2 if parent is not None})
    for name in wanted:
        h = next((h for h in found if h.version == 1 and name in h.controllers), None)
        parent = next((p for p in _parents(h) if _ready(h, p, frozenset({name}))), None) \
            if h is not None and name not in placed else None
        if parent is not None:
            placed[name] = (h, parent)
        elif name not in placed and name not in limits.optional:
            raise LimitError(f"cannot apply the {_FLAG[name]}: no usable {name} cgroup "
                             "controller (mount cgroup v2 with it enabled, or its v1 "
                             "hierarchy under /sys/fs/cgroup)")
    return placed


_FLAG = {"memory": "memory limit (--memory)", "pids": "pids limit (--pids-limit)",
         "cpu": "CPU limit (--cpus)", "freezer": "freezer (pause)"}


# -- one cgroup -------------------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None when the pid is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


class Cgroup:
    """One step's or container's cgroup: a dir in each hierarchy its limits need."""

    def __init__(self, dirs: dict[str, tuple[int, Path]]) -> None:
        self.dirs = dirs  # controller -> (hierarchy version, dir)

    @property
    def paths(self) -> tuple[str, ...]:
        """Each distinct dir once, for `enter` in the child."""
        return tuple(sorted({str(d) for _, d in self.dirs.values()}))

    @classmethod
    def create(cls, limits: Limits, found: Iterable[Hierarchy] | None = None) -> Cgroup | None:
        """Make the cgroup and write its limits; None when the limits need no controller."""
        found = hierarchies() if found is None else tuple(found)
        if idmap.rootless():  # no delegation is the rule there: what can be made, never an error
            limits = replace(limits, optional=limits.controllers)
        sweep(p for h in found for p in _parents(h))
        name = f"{os.getpid()}-{start_time(os.getpid()) or 0}-{secrets.token_hex(4)}"
        for attempt in range(3):
            placed = place(limits, found)
            if not placed:
                return None
            group = cls({c: (h.version, parent / name) for c, (h, parent) in placed.items()})
            try:
                group._make(limits)
                return group
            except FileNotFoundError:
                group.remove()  # another minibuild removed an empty parent meanwhile: again
            except OSError as exc:
                group.remove()
                if idmap.rootless():  # a delegated subtree may refuse a limit file: none then
                    return None
                raise LimitError(f"cannot set up the step's cgroup: {exc}") from exc
        raise LimitError("cannot set up the step's cgroup: its parent keeps disappearing")

    def _make(self, limits: Limits) -> None:
        for path in self.paths:
            os.mkdir(path, 0o755)
        self._write_limits(limits)

    def _write_limits(self, limits: Limits) -> None:
        for controller, (version, path) in self.dirs.items():
            if controller == "pids":
                _write(path / "pids.max", str(limits.pids))
            elif controller == "memory":
                self._write_memory(version, path, limits.memory or 0)
            elif controller == "cpu":
                quota = limits.cpu_quota()
                if version == 2:
                    _write(path / "cpu.max", f"{quota} {CPU_PERIOD}")
                else:
                    _write(path / "cpu.cfs_period_us", str(CPU_PERIOD))
                    _write(path / "cpu.cfs_quota_us", str(quota))

    @staticmethod
    def _write_memory(version: int, path: Path, size: int) -> None:
        """The limit, and as much swap again (docker's default for --memory alone)."""
        if version == 2:
            _write(path / "memory.max", str(size))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", str(size))
            return
        _write(path / "memory.limit_in_bytes", str(size))
        if (path / "memory.memsw.limit_in_bytes").exists():  # kernels with swap accounting
            _write(path / "memory.memsw.limit_in_bytes", str(2 * size))

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory limit."""
        version, path = self.dirs.get("memory", (0, Path()))
        name = "memory.events" if version == 2 else "memory.oom_control"
        for line in read_file(path / name).splitlines() if version else ():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def add(self, pid: int) -> None:
        """Move a process into the cgroup (a process that is gone already is fine: the step
        then reports its own end)."""
        for path in self.paths:
            try:
                _write(Path(path) / "cgroup.procs", str(pid))
            except ProcessLookupError:
                return
            except OSError as exc:
                raise LimitError(f"cannot move the step into its cgroup {path}: "
                                 f"{exc.strerror}") from exc

    def remove(self, seconds: float = 2.0) -> None:
        """rmdir every dir (its last processes may take a moment to leave it), and the
        `minibuild/` parent when no other step uses it: nothing is left in a cgroup that is not
        ours (one a CI job or systemd unit wants to remove when it ends)."""
        for path in self.paths:
            _rmdir(Path(path), seconds)
            _rmdir(Path(path).parent, 0)


def unavailable(limits: Limits, found: Iterable[Hierarchy] | None = None) -> frozenset[str]:
    """The controllers `limits` asks for (not optional) that no cgroup here can apply: a probe
    that makes the cgroup and removes it again (for the CLI's rootless warning)."""
    wanted = limits.controllers - limits.optional
    if not wanted:
        return frozenset()
    group = Cgroup.create(replace(limits, optional=limits.controllers), found)
    if group is None:
        return wanted
    group.remove(0.5)
    return wanted - frozenset(group.dirs)


def _rmdir(path: Path, seconds: float) -> None:
    deadline, pause = time.monotonic() + seconds, 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return  # left for the next sweep (a parent: in use by another step)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def enter(paths: Iterable[str]) -> None:
    """Move the calling process into these cgroup dirs (in the forked child: no locks taken)."""
    pid = str(os.getpid())
    for path in paths:
        try:
            _write(Path(path) / "cgroup.procs", pid)
        except OSError as exc:
            raise LimitError(f"cannot join the cgroup {path}: {exc.strerror}") from exc


# -- leftovers ----------------------------------------------------------------------------------

_swept: set[Path] = set()


def sweep(parents: Iterable[Path]) -> None:
    """Remove the empty cgroups a dead minibuild left in these parents (once per process)."""
    for parent in set(parents) - _swept:
        _swept.add(parent)
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            match = _NAME.fullmatch(name)
            if match and start_time(int(match.group(1))) != int(match.group(2)):
                _rmdir(parent / name, 0)  # EBUSY (still has processes): left alone


def is_ours(path: str) -> bool:
    """Whether a cgroup path (as /proc/PID/cgroup gives it) is a step's or container's."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent.rpartition("/")[2] == PARENT and _NAME.fullmatch(name) is not None


def parents(found: Iterable[Hierarchy] | None = None) -> list[Path]:
    """The `minibuild/` parent dirs that exist now, in every hierarchy (for checks)."""
    found = hierarchies() if found is None else found
    return [parent for h in found for parent in _parents(h) if parent.is_dir()]


def present(found: Iterable[Hierarchy] | None = None) -> list[Path]:
    """Every step or container cgroup that exists now, in every hierarchy (for checks)."""
    return [parent / name for parent in parents(found) for name in os.listdir(parent)
            if _NAME.fullmatch(name)]
