"""Containers for real: run/exec/diff/commit/rm on overlay mounts, namespaces, supervisors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Minibuild, write_context

pytestmark = pytest.mark.integration


# -- helpers ---------------------------------------------------------------------------------------


def tree_digest(path: Path) -> str:
    """sha256 over every entry's path, type, mode, owner, size, target and content."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            h.update(f"{os.path.relpath(full, path)}|{st.st_mode}|{st.st_uid}|{st.st_gid}|"
                     f"{st.st_size}|{st.st_rdev}\n".encode())
            if os.path.islink(full):
                h.update(os.readlink(full).encode())
            elif os.path.isfile(full):
                h.update(Path(full).read_bytes())
    return h.hexdigest()


def store_digest(root: Path) -> str:
    """The image side of a store: every blob and unpacked layer."""
    return tree_digest(root / "oci" / "blobs") + tree_digest(root / "layers")


def host_mounts_under(path: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(path) or p.startswith(str(path) + "/")]


def pids_with(marker: str) -> list[int]:
    """Host pids whose command line holds `marker`, ourselves excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def ps(mb: Minibuild) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(mb.run("ps", "-a", "--format", "json").stdout)}


@pytest.fixture
def cmb(mb):
    """`mb`, and afterwards: every container removed, no supervisor, process or mount left."""
    yield mb
    for name in ps(mb):
        mb.run("rm", "-f", name, check=False)
    marker = f"--root {mb.root}"
    assert wait_for(lambda: not pids_with(str(mb.root)), 10), pids_with(marker)
    assert host_mounts_under(mb.root) == []


# -- the seed: run -d, exec, diff, rm ---------------------------------------------------------------


def test_exec_writes_show_in_diff_and_go_away_with_rm(cmb):
    before = store_digest(cmb.root)
    cid = cmb.run("run", "-d", "--name", "myapp", "base:1.0", "sleep", "600").stdout.strip()
    assert len(cid) == 64
    assert ps(cmb)["myapp"]["status"] == "running"
    cmb.run("exec", "myapp", "sh", "-c", "echo data > /tmp/file.txt")
    cmb.run("exec", "myapp", "sh", "-c", "echo extra >> /etc/group && rm /etc/passwd")
    diff = cmb.run("diff", "myapp").stdout.splitlines()
    assert "A /tmp/file.txt" in diff and "C /tmp" in diff
    assert "C /etc/group" in diff and "D /etc/passwd" in diff
    assert set(diff) <= {"A /tmp/file.txt", "C /tmp", "C /etc", "C /etc/group", "D /etc/passwd"}
    assert cmb.run("exec", "myapp", "cat", "/tmp/file.txt").stdout == "data\n"
    cmb.run("rm", "-f", "myapp")
    assert "myapp" not in ps(cmb)
    again = cmb.run("run", "--rm", "base:1.0", "cat", "/tmp/file.txt", check=False)
    assert again.returncode == 1 and "No such file" in again.stderr
    assert cmb.run("run", "--rm", "base:1.0", "cat", "/etc/passwd").stdout.startswith("root:")
    assert store_digest(cmb.root) == before  # the image's blobs and layer dirs: byte-identical


def test_run_and_exec_hold_only_the_step_capabilities(cmb):
    cmb.run("run", "-d", "--name", "caps", "base:1.0", "sleep", "600")
    for out in (cmb.run("exec", "caps", "grep", "CapBnd", "/proc/self/status").stdout,
                cmb.run("run", "--rm", "base:1.0", "grep", "CapBnd", "/proc/self/status").stdout):
        bounding = int(out.split()[-1], 16)
        for cap in (21, 27, 18, 16):  # SYS_ADMIN, MKNOD, SYS_CHROOT, SYS_MODULE
            assert not bounding & (1 << cap), hex(bounding)
    cmb.run("rm", "-f", "caps")


def test_rm_refuses_a_running_container_without_f(cmb):
    cmb.run("run", "-d", "--name", "busy", "base:1.0", "sleep", "600")
    out = cmb.run("rm", "busy", check=False)
    assert out.returncode == 1 and "running" in out.stderr and "Traceback" not in out.stderr
    assert ps(cmb)["busy"]["status"] == "running"


def test_exec_into_a_stopped_container_is_one_clear_error(cmb):
    cmb.run("run", "--name", "done", "base:1.0", "true")
    out = cmb.run("exec", "done", "true", check=False)
    assert out.returncode == 1 and out.stderr.startswith("error: container done is not running")


# -- run: stdio, status, config -----------------------------------------------------------------------


def test_foreground_streams_stay_apart_and_status_passes_through(cmb):
    out = cmb.run("run", "--rm", "base:1.0", "sh", "-c", "echo out; echo err >&2; exit 7",
                  check=False)
    assert (out.returncode, out.stdout, out.stderr) == (7, "out\n", "err\n")
    assert ps(cmb) == {}  # --rm


def test_stdin_only_with_i(cmb):
    assert cmb.run("run", "--rm", "-i", "base:1.0", "cat", input=b"hello").stdout == "hello"
    assert cmb.run("run", "--rm", "base:1.0", "cat", input=b"hello").stdout == ""


def test_tty_gives_a_terminal(cmb):
    out = cmb.run("run", "--rm", "-t", "base:1.0", "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert out.stdout.replace("\r", "") == "tty\n"


def test_env_workdir_user_and_hostname(cmb):
    out = cmb.run("run", "--rm", "--name", "cfg", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000",
                  "base:1.0", "sh", "-c", 'echo $FOO; pwd; id -u; id -g; hostname').stdout.split()
    assert out[:4] == ["bar", "/tmp", "1000", "1000"]
    assert len(out[4]) == 12  # the short container id, as docker does


def test_entrypoint_and_cmd_combine_as_docker(cmb, tmp_path):
    ctx = write_context(tmp_path / "ctx", 'FROM base:1.0\nENTRYPOINT ["echo", "ep"]\nCMD ["dflt"]\n')
    cmb.build(ctx, "-t", "ep:1")
    assert cmb.run("run", "--rm", "ep:1").stdout == "ep dflt\n"
    assert cmb.run("run", "--rm", "ep:1", "x", "y").stdout == "ep x y\n"
    assert cmb.run("run", "--rm", "--entrypoint", "echo", "ep:1").stdout == "\n"
    assert cmb.run("run", "--rm", "--entrypoint", "echo", "ep:1", "z").stdout == "z\n"
    missing = cmb.run("run", "--rm", "base:1.0", "no-such-cmd", check=False)
    assert missing.returncode == 127 and "not found" in missing.stderr


def test_container_sees_only_its_own_processes(cmb):
    cmb.run("run", "-d", "--name", "iso", "base:1.0", "sleep", "600")
    pids = cmb.run("exec", "iso", "sh", "-c", "ls /proc | grep '^[0-9]'").stdout.split()
    assert "1" in pids and str(os.getpid()) not in pids and len(pids) <= 5


def test_network_none_has_only_loopback(cmb):
    out = cmb.run("run", "--rm", "--network", "none", "base:1.0", "ip", "-o", "link").stdout
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"]


# -- lifecycle -------------------------------------------------------------------------------------


def test_logs_stop_start_keep_the_upper_dir(cmb):
    cmb.run("run", "-d", "--name", "svc", "base:1.0", "sh", "-c",
            "echo started; echo oops >&2; touch /tmp/mark; sleep 600")
    assert wait_for(lambda: "oops" in cmb.run("logs", "svc").stdout)
    assert cmb.run("logs", "svc").stdout == "started\noops\n"
    cmb.run("stop", "-t", "1", "svc")
    record = ps(cmb)["svc"]  # sh is PID 1 with no TERM trap: SIGKILL after -t, as docker
    assert record["status"] == "exited" and record["exit_code"] == 137
    cmb.run("start", "svc")
    assert ps(cmb)["svc"]["status"] == "running"
    cmb.run("exec", "svc", "test", "-f", "/tmp/mark")  # its writes survived the restart
    assert wait_for(lambda: cmb.run("logs", "svc").stdout.count("started") == 2)


def test_killing_minibuild_leaves_no_container_process_or_mount(cmb):
    env = {**os.environ, "MINIBUILD_ROOT": str(cmb.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "run", "--name", "fg", "base:1.0",
                             "sleep", "6177"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: pids_with("6177") and ps(cmb).get("fg", {}).get("status") == "running")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not pids_with("sleep\x006177"))
        assert ps(cmb)["fg"]["status"] == "dead"
        assert host_mounts_under(cmb.root) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- commit ----------------------------------------------------------------------------------------


def test_commit_makes_a_layer_others_can_read(cmb, tmp_path):
    from tests.integration.test_build import umoci_unpack

    cmb.run("run", "-d", "--name", "myapp", "-e", "MODE=prod", "base:1.0", "sleep", "600")
    cmb.run("exec", "myapp", "sh", "-c", "echo data > /tmp/file.txt && rm /etc/group")
    upper = cmb.root / "containers" / ps(cmb)["myapp"]["id"] / "upper"
    upper_before = tree_digest(upper)
    digest = cmb.run("commit", "-m", "add data", "myapp", "app:1.1").stdout.strip()
    assert digest.startswith("sha256:")
    assert tree_digest(upper) == upper_before  # the live container's upper dir is untouched
    assert ps(cmb)["myapp"]["status"] == "running"  # paused, then resumed
    history = json.loads(cmb.run("history", "--format", "json", "app:1.1").stdout)
    committed = [h for h in history if h["created_by"] == "sleep 600"]
    assert len(committed) == 1 and committed[0]["comment"] == "add data"
    assert not committed[0]["empty_layer"]
    config = json.loads(cmb.run("inspect", "app:1.1").stdout)[0]["Config"]
    assert "MODE=prod" in config["Env"]
    rootfs = umoci_unpack(cmb, "app:1.1", tmp_path)
    assert (rootfs / "tmp" / "file.txt").read_text() == "data\n"
    assert not (rootfs / "etc" / "group").exists()
    assert cmb.run("run", "--rm", "app:1.1", "cat", "/tmp/file.txt").stdout == "data\n"


def test_layers_lists_entries_whiteouts_and_waste(cmb):
    cmb.run("run", "--name", "w", "base:1.0", "rm", "/etc/passwd")
    cmb.run("commit", "w", "gone:1")
    out = cmb.run("layers", "--files", "gone:1").stdout
    assert "whiteout  /etc/passwd" in out
    assert "/etc/passwd  (hidden by layer" in out
    assert "deleted by layer" in out


def test_missing_workdir_is_created_through_the_overlay(cmb):
    out = cmb.run("run", "--name", "wd", "-w", "/etc/app/data", "base:1.0", "pwd").stdout
    assert out == "/etc/app/data\n"
    assert cmb.run("diff", "wd").stdout.splitlines() == ["C /etc", "A /etc/app", "A /etc/app/data"]


def test_stop_sends_the_image_stopsignal(cmb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nSTOPSIGNAL SIGUSR1\n")
    cmb.build(ctx, "-t", "usr1:1")
    cmb.run("run", "-d", "--name", "trap", "usr1:1", "sh", "-c",
            "trap 'echo got usr1; exit 5' USR1; echo ready; while true; do sleep 0.1; done")
    assert wait_for(lambda: "ready" in cmb.run("logs", "trap").stdout)
    cmb.run("stop", "-t", "20", "trap")
    assert ps(cmb)["trap"]["exit_code"] == 5
    assert "got usr1" in cmb.run("logs", "trap").stdout
