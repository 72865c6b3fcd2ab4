"""pause, unpause and commit's pause for real: the container's whole cgroup is frozen, so a
process that forks continuously gets nowhere while paused (SIGSTOP to a pid list missed the
children forked meanwhile), and `exec` joins the container's cgroups."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from minibuild.containers.signals import namespace_pids
from minibuild.sandbox import cgroups, hierarchy
from minibuild.sandbox.freezer import freezer_of
from tests.conftest import Minibuild

# forks without end (each subshell forks a sleeper and leaves it to init): a moving target
# for SIGSTOP; about 50 sleepers live at a time
FORKER = "while true; do (sleep 1 &); sleep 0.01; done"


def _has_freezer() -> bool:
    return any(h.version == 2 or "freezer" in h.controllers for h in hierarchy.hierarchies())


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not _has_freezer(), reason="needs cgroup v2 or the v1 freezer")]


def _records(mb: Minibuild) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(mb.run("ps", "-a", "--format", "json").stdout)}


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _cpu_ticks(pids) -> dict[int, int]:
    """utime+stime of each process still there."""
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


@pytest.fixture
def pmb(mb):
    """`mb`, and afterwards: every container removed, no cgroup of ours left behind."""
    before = set(cgroups.present())
    yield mb
    for name in _records(mb):
        mb.run("unpause", name, check=False)
        mb.run("rm", "-f", name, check=False)
    assert _wait_for(lambda: set(cgroups.present()) <= before, 5)


def test_a_forking_container_is_fully_frozen_while_paused(pmb):
    pmb.run("run", "-d", "--name", "forker", "--pids-limit", "1000", "base:1.0",
            "sh", "-c", FORKER)
    init = _records(pmb)["forker"]["pid"]
    assert _wait_for(lambda: len(namespace_pids(init)) > 5)
    pmb.run("pause", "forker")
    assert _records(pmb)["forker"]["status"] == "paused"
    assert "(Paused)" in pmb.run("ps").stdout
    frozen = set(namespace_pids(init))
    ticks = _cpu_ticks(frozen)
    time.sleep(1.0)
    assert set(namespace_pids(init)) == frozen  # no process forked, none exited
    assert _cpu_ticks(frozen) == ticks  # and none ran
    assert freezer_of(init).frozen()
    pmb.run("unpause", "forker")
    assert _records(pmb)["forker"]["status"] == "running"
    assert _wait_for(lambda: set(namespace_pids(init)) - frozen)  # forking again


def test_pause_and_unpause_refuse_the_wrong_state(pmb):
    pmb.run("run", "-d", "--name", "p", "base:1.0", "sleep", "600")
    out = pmb.run("unpause", "p", check=False)
    assert out.returncode == 1 and out.stderr.startswith("error: container p is not paused")
    pmb.run("pause", "p")
    out = pmb.run("pause", "p", check=False)
    assert out.returncode == 1 and "already paused" in out.stderr
    out = pmb.run("exec", "p", "true", check=False)
    assert out.returncode == 1 and "is paused" in out.stderr and "Traceback" not in out.stderr
    pmb.run("run", "--name", "done", "base:1.0", "true")
    out = pmb.run("pause", "done", check=False)
    assert out.returncode == 1 and "is not running" in out.stderr


def test_commit_freezes_a_forking_container_and_thaws_it_after(pmb):
    pmb.run("run", "-d", "--name", "busy", "--pids-limit", "1000", "base:1.0", "sh", "-c",
            "echo data > /data; " + FORKER)
    init = _records(pmb)["busy"]["pid"]
    pmb.run("commit", "busy", "busy:1")
    assert not freezer_of(init).frozen()
    before = set(namespace_pids(init))
    assert _wait_for(lambda: set(namespace_pids(init)) - before)  # it runs on
    assert pmb.run("run", "--rm", "busy:1", "cat", "/data").stdout == "data\n"
    pmb.run("pause", "busy")
    pmb.run("commit", "busy", "busy:2")
    assert freezer_of(init).frozen()  # a paused container stays paused


def test_stop_and_rm_end_a_paused_container(pmb):
    pmb.run("run", "-d", "--name", "a", "base:1.0", "sleep", "600")
    pmb.run("run", "-d", "--name", "b", "base:1.0", "sleep", "600")
    pmb.run("pause", "a", "b")
    pmb.run("stop", "-t", "1", "a")
    assert _records(pmb)["a"]["status"] == "exited"
    pmb.run("rm", "-f", "b")
    assert "b" not in _records(pmb)


def test_exec_joins_the_container_cgroups(pmb):
    pmb.run("run", "-d", "--name", "e", "--pids-limit", "50", "base:1.0", "sleep", "600")
    init = _records(pmb)["e"]["pid"]
    inside = pmb.run("exec", "e", "cat", "/proc/self/cgroup").stdout
    assert inside == Path(f"/proc/{init}/cgroup").read_text()


# #13 finding 3: chains of processes that each swap a dir and a symlink to a host dir (rename
# by rename), rewrite a big file (truncate, then write) and hand over to a child they fork
# before exiting: the pid set never holds still, so SIGSTOP to a listed set of pids misses the
# newest of each chain, which then runs on while commit reads the upper dir
SWAPPER = """mkdir -p /w/d; ln -s {host} /w/l
chain() {{ mv /w/d /w/t; mv /w/l /w/d; mv /w/t /w/l; head -c 4000000 /dev/zero > /w/big
           chain & }}
for i in 1 2 3 4; do chain & done 2>/dev/null
while true; do sleep 1; done"""


def test_commit_of_a_forking_swapping_container_never_takes_a_host_file(pmb, tmp_path):
    host = tmp_path / "host-secret"
    host.mkdir()
    token = f"secret-{time.monotonic_ns()}"
    (host / "secret.txt").write_text(token)
    pmb.run("run", "-d", "--name", "swapper", "--pids-limit", "500", "base:1.0", "sh", "-c",
            SWAPPER.format(host=host))
    init = _records(pmb)["swapper"]["pid"]
    assert _wait_for(lambda: len(namespace_pids(init)) > 4)
    for n in range(20):
        out = pmb.run("commit", "--compression", "none", "swapper", f"swapped:{n}", check=False)
        assert out.returncode == 0, f"commit {n} failed: {out.stderr}"
    assert _records(pmb)["swapper"]["status"] == "running"
    for blob in (pmb.root / "oci" / "blobs").rglob("*"):  # uncompressed layers: the bytes as stored
        if blob.is_file():
            data = blob.read_bytes()
            assert token.encode() not in data and b"secret.txt" not in data, blob
