"""pivot_root for real: a running step's or container's mount namespace holds no host mount, so
a host tmpfs unmounted meanwhile is gone for good (with chroot, the namespace's copy of the host
mount tree kept it alive, and kept host loop devices busy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_context

pytestmark = pytest.mark.integration

# run in a separate process: enter a mount namespace (by /proc/PID/ns/mnt) and report what is
# reachable there: its root's entries, whether PATH exists, and the namespace's mount points
_LOOK = """
import ctypes, json, os, sys
fd = os.open(f"/proc/{sys.argv[1]}/ns/mnt", os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, 0x00020000) != 0:
    raise OSError(ctypes.get_errno(), "setns")
points = [line.split()[4] for line in open("/proc/1/mountinfo")] if os.path.exists(
    "/proc/1/mountinfo") else []
print(json.dumps({"root": sorted(os.listdir("/")), "marker": os.path.exists(sys.argv[2]),
                  "points": points}))
"""


def _look(pid: int, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOOK, str(pid), str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture
def host_tmpfs(tmp_path):
    """A tmpfs mounted on the host (with a marker file), unmounted at the end if still there."""
    point = tmp_path / "hostmnt"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "minibuild-test", str(point)],
                   check=True)
    (point / "marker").write_text("host")
    yield point
    subprocess.run(["umount", str(point)], capture_output=True)


def _assert_no_host_mount(pid: int, point: Path) -> None:
    """Unmount the host tmpfs while the step runs; nothing of it may stay in its namespace."""
    subprocess.run(["umount", str(point)], check=True)  # no EBUSY
    seen = _look(pid, point / "marker")
    assert not seen["marker"], "the sandbox's mount namespace still holds the host tmpfs"
    assert "work" not in seen["root"] and "usr" not in seen["root"]  # the image's root only
    assert seen["points"] and all(not p.startswith(("/sys", "/tmp/", "/work", "/home", "/usr"))
                                  for p in seen["points"]), seen["points"]


def _pid_running(argv_marker: bytes, seconds: float = 20.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "cmdline").read_bytes() == argv_marker:
                        return int(entry.name)
                except OSError:
                    continue
        time.sleep(0.05)
    raise AssertionError(f"no process {argv_marker!r}")


def test_a_running_container_holds_no_host_mount(mb, host_tmpfs):
    mb.run("run", "-d", "--name", "pinned", "base:1.0", "sleep", "601.5")
    try:
        pid = next(c["pid"] for c in json.loads(mb.run("ps", "--format", "json").stdout))
        _assert_no_host_mount(pid, host_tmpfs)
        # exec enters the pivoted namespace and works as before
        assert mb.run("exec", "pinned", "cat", "/etc/hostname").stdout.strip()
        assert "marker" not in mb.run("exec", "pinned", "ls", "-a", str(host_tmpfs.parent),
                                      check=False).stdout
    finally:
        mb.run("rm", "-f", "pinned")


def test_a_running_build_step_holds_no_host_mount(mb, tmp_path, host_tmpfs):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                            "RUN --mount=type=tmpfs,target=/scratch sleep 602.5\n")
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root)}
    build = subprocess.Popen([sys.executable, "-m", "minibuild", "build", "--progress", "plain",
                              str(context)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _assert_no_host_mount(_pid_running(b"sleep\x00602.5\x00"), host_tmpfs)
    finally:
        build.terminate()  # minibuild stops the step and removes its cgroup and scratch
        build.wait(20)
