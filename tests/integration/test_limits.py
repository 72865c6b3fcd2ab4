"""Resource limits for real: --pids-limit, --memory and --cpus on RUN steps and containers, the
default pids limit of build steps, and every cgroup gone afterwards (even after a SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minibuild.sandbox import cgroups, hierarchy
from tests.conftest import REPO, Minibuild, write_context

pytestmark = pytest.mark.integration


def _mounted(controller: str) -> bool:
    return any(controller in h.controllers for h in hierarchy.hierarchies())


needs_cgroups = pytest.mark.skipif(
    not all(_mounted(c) for c in ("pids", "memory", "cpu")),
    reason="needs the pids, memory and cpu cgroup controllers (v1 or v2)")


def _left(before: set[Path]) -> set[Path]:
    """Cgroups made since `before` whose maker (the pid their name starts with) has exited: the
    test's minibuild commands have, another minibuild running meanwhile on the machine has not."""
    return {path for path in set(cgroups.present()) - before
            if not os.path.exists(f"/proc/{path.name.split('-')[0]}")}


@pytest.fixture
def lmb(mb):
    """`mb`, and afterwards: no cgroup of ours left that the test made."""
    before = set(cgroups.present())
    yield mb
    for name in [line.split()[-1] for line in mb.run("ps", "-a", "-q").stdout.splitlines()]:
        mb.run("rm", "-f", name, check=False)
    deadline = time.monotonic() + 5
    while _left(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _left(before) == set()
    if not before and not set(cgroups.present()):  # the parents went with the last cgroup
        assert cgroups.parents() == []


def _popen_build(mb: Minibuild, context: Path, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root)}
    return subprocess.Popen([sys.executable, "-m", "minibuild", "build", "--progress", "plain",
                             *flags, str(context)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _cgroup_lines(proc: subprocess.Popen) -> dict[str, str]:
    """Read a step's /proc/self/cgroup lines off the build's output, up to the marker line."""
    found = {}
    for line in proc.stdout:
        if line.startswith("CGROUP-END"):
            return found
        number, sep, rest = line.strip().partition(":")
        if sep and number.isdigit():
            names, _, path = rest.partition(":")
            found[names] = path
    raise AssertionError("the step never printed its cgroups")


def _dir_of(controller: str, lines: dict[str, str]) -> tuple[int, Path]:
    """The host dir of the step's cgroup of one controller, and the hierarchy's version."""
    for h in hierarchy.hierarchies():
        if controller in h.controllers:
            names = next(n for n in lines if h.member(n))
            return h.version, h.locate(lines[names])
    raise AssertionError(f"no {controller} hierarchy")


_SHOW = "RUN cat /proc/self/cgroup; echo CGROUP-END; sleep 3\n"


# -- pids ------------------------------------------------------------------------------------------


@needs_cgroups
def test_a_fork_bomb_stops_at_the_pids_limit_and_the_build_fails_cleanly(lmb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                            "RUN i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; "
                            "echo all $i started\n")
    started = time.monotonic()
    out = lmb.build(context, "--pids-limit", "20", check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "can't fork" in out.stdout + out.stderr
    assert "all 60 started" not in out.stdout + out.stderr
    assert time.monotonic() - started < 25  # the sleeps died with the step, not after 30 s
    assert "failed with exit code" in out.stderr


@needs_cgroups
def test_build_steps_get_the_default_pids_limit(lmb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n" + _SHOW)
    proc = _popen_build(lmb, context)
    try:
        version, path = _dir_of("pids", _cgroup_lines(proc))
        assert (path / "pids.max").read_text().strip() == "4096"
    finally:
        proc.wait(30)
    assert proc.returncode == 0


# -- memory ----------------------------------------------------------------------------------------


@needs_cgroups
def test_a_step_over_its_memory_limit_is_oom_killed(lmb, tmp_path):
    # busybox dd allocates its whole block: 96 MiB is over 32 MiB plus as much swap again
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                            "RUN dd if=/dev/zero of=/dev/null bs=96M count=1 && echo survived\n")
    out = lmb.build(context, "--memory", "32m", check=False)
    assert out.returncode != 0 and "\nsurvived" not in out.stderr
    assert "exit code 137: out of memory" in out.stderr
    small = write_context(tmp_path / "small", "FROM base:1.0\n"
                          "RUN dd if=/dev/zero of=/dev/null bs=8M count=1 && echo survived\n")
    assert "\nsurvived" in lmb.build(small, "--memory", "32m").stderr


@needs_cgroups
def test_a_container_over_its_memory_limit_exits_137(lmb):
    out = lmb.run("run", "--rm", "-m", "32m", "base:1.0", "dd", "if=/dev/zero", "of=/dev/null",
                  "bs=96M", "count=1", check=False)
    assert out.returncode == 137


# -- cpus, and containers' limits ------------------------------------------------------------------


def _cpu_quota(version: int, path: Path) -> tuple[str, str]:
    if version == 2:
        quota, period = (path / "cpu.max").read_text().split()
        return quota, period
    return ((path / "cpu.cfs_quota_us").read_text().strip(),
            (path / "cpu.cfs_period_us").read_text().strip())


@needs_cgroups
def test_cpus_writes_the_cfs_quota_of_the_step(lmb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n" + _SHOW)
    proc = _popen_build(lmb, context, "--cpus", "1.5", "--pids-limit", "77")
    try:
        lines = _cgroup_lines(proc)
        assert _cpu_quota(*_dir_of("cpu", lines)) == ("150000", "100000")
        assert (_dir_of("pids", lines)[1] / "pids.max").read_text().strip() == "77"
    finally:
        proc.wait(30)
    assert proc.returncode == 0


@needs_cgroups
def test_a_container_keeps_its_limits_across_start(lmb):
    lmb.run("run", "-d", "--name", "lim", "--cpus", "0.5", "--memory", "64m", "--pids-limit",
            "33", "base:1.0", "sleep", "600")
    for attempt in range(2):
        pid = _container_pid(lmb, "lim")
        lines = dict(line.split(":", 2)[1:] for line in
                     Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        assert _cpu_quota(*_dir_of("cpu", lines)) == ("50000", "100000")
        assert (_dir_of("pids", lines)[1] / "pids.max").read_text().strip() == "33"
        version, memory = _dir_of("memory", lines)
        limit = "memory.max" if version == 2 else "memory.limit_in_bytes"
        assert (memory / limit).read_text().strip() == str(64 << 20)
        if attempt == 0:
            lmb.run("stop", "-t", "0", "lim")
            lmb.run("start", "lim")


def _container_pid(mb: Minibuild, name: str) -> int:
    import json

    records = json.loads(mb.run("ps", "-a", "--format", "json").stdout)
    return next(c["pid"] for c in records if c["name"] == name)


def test_bad_limit_flags_are_one_line_errors(mb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN true\n")
    for flags in (("--memory", "1k"), ("--cpus", "lots"), ("--pids-limit", "-3")):
        out = mb.build(context, *flags, check=False)
        assert out.returncode != 0 and out.stderr.startswith(f"error: {flags[0]} "), out.stderr
        out = mb.run("run", "--rm", *flags, "base:1.0", "true", check=False)
        assert out.returncode != 0 and out.stderr.startswith(f"error: {flags[0]} "), out.stderr


# -- leftovers -------------------------------------------------------------------------------------


@needs_cgroups
def test_the_next_start_removes_the_cgroup_a_killed_build_left(lmb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n" + _SHOW.replace("3", "60"))
    proc = _popen_build(lmb, context)
    _, path = _dir_of("pids", _cgroup_lines(proc))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while (path / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)  # the step dies with its parent (PDEATHSIG), the cgroup stays
    assert path.is_dir() and not (path / "cgroup.procs").read_text().strip()
    again = write_context(tmp_path / "again", "FROM base:1.0\nRUN true\n")
    lmb.build(again)
    assert not path.exists()
