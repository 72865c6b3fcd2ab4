"""A build stopped by SIGINT, SIGTERM or SIGKILL leaves no mount, no process, no tag, no scratch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_context

pytestmark = pytest.mark.integration

MARK = "31337"  # a sleep argument no other process on the machine uses


def step_processes() -> list[int]:
    """PIDs whose command line is our marker sleep."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", MARK.encode()]:
                found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def start_sleeping_build(mb, tmp_path, *args: str) -> subprocess.Popen:
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nRUN echo started; sleep {MARK}\n")
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "build", "--progress", "plain",
                             "-t", "stopped:1", *args, str(ctx)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: step_processes() != []), "the RUN step never started"
    return proc


def assert_clean(mb) -> None:
    assert str(mb.root) not in Path("/proc/mounts").read_text()
    assert wait_for(lambda: step_processes() == []), "the step's processes outlived the build"
    assert "stopped:1" not in (mb.root / "oci/index.json").read_text()


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_end_the_step_and_undo_everything(mb, tmp_path, signum, status):
    proc = start_sleeping_build(mb, tmp_path)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err.decode()
    assert b"Traceback" not in err
    assert_clean(mb)
    assert list((mb.root / "run").iterdir()) == []


def test_sigkill_leaves_nothing_the_next_command_does_not_clean(mb, tmp_path):
    proc = start_sleeping_build(mb, tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    assert_clean(mb)  # the kernel tore the mount namespace down with its processes
    assert list((mb.root / "run").iterdir()) != []  # the dead session's scratch is still there
    mb.run("images")
    assert list((mb.root / "run").iterdir()) == []
    mb.build(write_context(tmp_path / "again", "FROM base:1.0\nRUN echo ok > /ok\n"), "-t", "again:1")


def test_sigkill_ends_the_step_of_a_userns_auto_build_too(mb, tmp_path):
    """--userns=auto: the helpers change their (fs)uid while they set up, which clears the
    parent-death signal; they ask for it again, so the step still dies with minibuild (the
    adversarial review found the whole tree, host-root helper included, orphaned)."""
    if "containers:" not in Path("/etc/subuid").read_text():
        pytest.skip("no 'containers' range in /etc/subuid (scripts/rootless-setup.sh adds it)")
    proc = start_sleeping_build(mb, tmp_path, "--userns=auto")
    proc.kill()
    proc.communicate(timeout=30)
    assert_clean(mb)
