"""kill, wait, rename, top, start -a, logs --tail and cp on real containers."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.integration.test_containers import cmb, ps, wait_for  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def test_kill_wait_rename_top(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "sleeper", "base:1.0", "sleep", "600")
    top = cmb.run("top", "sleeper").stdout.splitlines()
    assert "PID" in top[0].split() and len(top) == 2 and top[1].endswith("sleep 600")
    cmb.run("rename", "sleeper", "napper")
    assert ps(cmb)["napper"]["status"] == "running"
    # sleep is PID 1 without a handler: the kernel drops its SIGTERM, as under docker
    assert cmb.run("kill", "-s", "TERM", "napper").stdout == "napper\n"
    time.sleep(0.5)
    assert ps(cmb)["napper"]["status"] == "running"
    cmb.run("kill", "-s", "KILL", "napper")
    assert cmb.run("wait", "napper").stdout == "137\n"
    assert ps(cmb)["napper"]["status"] == "exited"  # the supervisor kept the new name
    out = cmb.run("kill", "napper", check=False)
    assert out.returncode == 1 and "is not running" in out.stderr


def test_kill_default_is_sigkill(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "k", "base:1.0", "sh", "-c", "trap '' TERM; sleep 600")
    cmb.run("kill", "k")
    assert cmb.run("wait", "k").stdout == "137\n"


def test_start_attach_and_logs_tail(cmb):  # noqa: F811
    cmb.run("run", "--name", "say", "base:1.0", "sh", "-c", "echo one; echo two; exit 3",
            check=False)
    out = cmb.run("start", "-a", "say", check=False)
    assert (out.returncode, out.stdout) == (3, "one\ntwo\n")
    assert cmb.run("logs", "--tail", "1", "say").stdout == "two\n"


def test_logs_follow_prints_a_running_container_until_it_exits(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "ticker", "base:1.0", "sh", "-c",
            "for i in 1 2 3; do echo tick-$i; sleep 0.4; done; echo bye")
    started = time.monotonic()
    out = cmb.run("logs", "-f", "ticker", timeout=60)
    assert out.stdout == "tick-1\ntick-2\ntick-3\nbye\n"
    assert time.monotonic() - started >= 0.5  # it waited for the output still to come
    assert ps(cmb)["ticker"]["status"] == "exited"
    assert cmb.run("logs", "-f", "--tail", "1", "ticker").stdout == "bye\n"  # ended: no wait


def test_cp_both_ways_on_a_stopped_container(cmb, tmp_path):  # noqa: F811
    cmb.run("run", "--name", "box", "base:1.0", "sh", "-c",
            "mkdir -p /data/sub && echo hi > /data/sub/f && ln -s /etc /data/out")
    cmb.run("cp", "box:/data", str(tmp_path / "got"))
    assert (tmp_path / "got" / "sub" / "f").read_text() == "hi\n"
    assert os.readlink(tmp_path / "got" / "out") == "/etc"  # a link stays a link
    (tmp_path / "in.txt").write_text("from host\n")
    cmb.run("cp", str(tmp_path / "in.txt"), "box:/data/")
    cmb.run("cp", str(tmp_path / "in.txt"), "box:/data/out/x")  # /etc inside, never the host's
    assert not Path("/etc/x").exists()
    cmb.run("start", "-a", "box", check=False)  # runs its command again; files stay
    assert cmb.run("cp", "box:/data/in.txt", "-").returncode == 0
    cmb.run("cp", "box:/etc/x", str(tmp_path / "x"))
    assert (tmp_path / "x").read_text() == "from host\n"


def test_cp_into_a_running_container_and_tar_streams(cmb, tmp_path):  # noqa: F811
    cmb.run("run", "-d", "--name", "live", "base:1.0", "sleep", "600")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("A")
    cmb.run("cp", str(tmp_path / "d"), "live:/tmp")
    assert cmb.run("exec", "live", "cat", "/tmp/d/a").stdout == "A"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("t.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    import subprocess
    import sys

    env = {**os.environ, "MINIBUILD_ROOT": str(cmb.root)}
    subprocess.run([sys.executable, "-m", "minibuild", "cp", "-", "live:/tmp"],
                   input=data.getvalue(), env=env, check=True)
    assert cmb.run("exec", "live", "cat", "/tmp/t.txt").stdout == "ok"
    out = subprocess.run([sys.executable, "-m", "minibuild", "cp", "live:/tmp/d", "-"],
                         capture_output=True, env=env, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert sorted(tar.getnames()) == ["d", "d/a"]
    start = time.monotonic()
    cmb.run("rm", "-f", "live")
    assert time.monotonic() - start < 30
    assert wait_for(lambda: "live" not in ps(cmb))
