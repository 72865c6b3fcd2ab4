"""Terminals as docker users know them: `run -it` on a pty of the container's own (in tmux),
the user's command as PID 1, and `logs --timestamps`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import REPO
from tests.integration.test_containers import cmb, pids_with, ps, wait_for  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


# -- PID 1 -----------------------------------------------------------------------------------------


def test_the_command_is_pid_1(cmb):  # noqa: F811
    out = cmb.run("run", "--rm", "base:1.0", "cat", "/proc/1/cmdline")
    assert out.stdout == "cat\0/proc/1/cmdline\0"
    assert cmb.run("run", "--rm", "base:1.0", "sh", "-c", "echo $$").stdout == "1\n"


def test_kill_reaches_pid_1_with_a_handler(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "trapper", "base:1.0", "sh", "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done")
    cmb.run("exec", "trapper", "true")  # exec still finds the namespaces
    cmb.run("kill", "-s", "TERM", "trapper")
    assert cmb.run("wait", "trapper").stdout == "7\n"


def test_stop_kills_a_pid_1_that_ignores_sigterm_after_the_timeout(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "deaf", "base:1.0", "sleep", "600")
    started = time.monotonic()
    cmb.run("stop", "-t", "1", "deaf")
    assert time.monotonic() - started >= 1.0
    assert ps(cmb)["deaf"]["status"] == "exited"
    assert cmb.run("wait", "deaf").stdout == "137\n"


def test_a_pid_1_of_another_user_dies_with_a_killed_minibuild(cmb):  # noqa: F811
    # the user change clears PDEATHSIG: the command must set it again before its execve
    env = {**os.environ, "MINIBUILD_ROOT": str(cmb.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "run", "-u", "1000", "--name",
                             "fg", "base:1.0", "sleep", "6178"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: pids_with("6178") and ps(cmb).get("fg", {}).get("status")
                        == "running")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not pids_with("sleep\x006178"))
    finally:
        if proc.poll() is None:
            proc.kill()


# -- logs --timestamps -----------------------------------------------------------------------------


def test_logs_timestamps_and_window(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "talk", "base:1.0", "sh", "-c", "echo one; echo two >&2")
    assert wait_for(lambda: ps(cmb)["talk"]["status"] == "exited")
    plain = cmb.run("logs", "talk")
    assert (plain.stdout, plain.stderr) == ("one\ntwo\n", "")  # as docker: both on stdout
    stamped = cmb.run("logs", "-t", "talk").stdout.splitlines()
    assert [re.fullmatch(rf"({STAMP}) (\w+)", line).group(2) for line in stamped] == ["one", "two"]
    assert cmb.run("logs", "--timestamps", "-n", "1", "talk").stdout.endswith(" two\n")
    assert cmb.run("logs", "--since", "2999-01-01T00:00:00Z", "talk").stdout == ""
    assert cmb.run("logs", "--until", "1h", "talk").stdout == ""
    assert cmb.run("logs", "--since", "1h", "talk").stdout == "one\ntwo\n"


def test_foreground_runs_are_logged(cmb):  # noqa: F811
    out = cmb.run("run", "--name", "fg", "base:1.0", "sh", "-c", "echo out; echo err >&2")
    assert (out.stdout, out.stderr) == ("out\n", "err\n")
    assert sorted(cmb.run("logs", "fg").stdout.splitlines()) == ["err", "out"]


def test_logs_follow_prints_until_the_end(cmb):  # noqa: F811
    cmb.run("run", "-d", "--name", "slow", "base:1.0", "sh", "-c",
            "echo a; sleep 1; echo b")
    out = cmb.run("logs", "-f", "-t", "slow").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in out] == ["a", "b"]


# -- run -it in tmux -------------------------------------------------------------------------------


class Tmux:
    """A tmux server of our own (its own socket): killed by name of socket, nothing else."""

    def __init__(self) -> None:
        self.socket = f"mbtest-{uuid.uuid4().hex[:12]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p")

    def wait_screen(self, text: str, seconds: float = 20.0) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux():
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    server = Tmux()
    yield server
    server.kill()


def test_run_it_gives_a_real_terminal(cmb, tmux):  # noqa: F811
    run = (f"cd {shlex.quote(str(REPO))} && stty -g > {cmb.root}/before; "
           f"TERM=screen MINIBUILD_ROOT={cmb.root} {sys.executable} -m minibuild run -it --name term "
           f"base:1.0 sh; echo EXIT=$?; stty -g > {cmb.root}/after; sleep 600")
    tmux("new-session", "-d", "-x", "100", "-y", "30", run)
    tmux.wait_screen("/ #")
    tmux("send-keys", "tty; stty size; echo T=$TERM; cat /proc/1/cmdline; echo; echo E$((1+1))N",
         "Enter")
    screen = tmux.wait_screen("E2N")  # the command line itself shows E$((1+1))N
    assert "/dev/pts/0" in screen and "30 100" in screen and "T=screen" in screen
    assert "\nsh\n" in screen.replace("\r", "")  # cat /proc/1/cmdline
    tmux("resize-window", "-x", "120", "-y", "40")
    time.sleep(0.5)
    tmux("send-keys", "stty size", "Enter")
    tmux.wait_screen("40 120")
    tmux("send-keys", "exit 3", "Enter")
    tmux.wait_screen("EXIT=3")
    assert wait_for(lambda: (cmb.root / "after").exists() and (cmb.root / "after").read_text())
    assert (cmb.root / "after").read_text() == (cmb.root / "before").read_text()  # not raw
    assert "/dev/pts/0" in cmb.run("logs", "term").stdout


def test_exec_it_gets_a_pty_of_the_containers_devpts(cmb, tmux):  # noqa: F811
    cmb.run("run", "-d", "--name", "host", "base:1.0", "sleep", "600")
    run = (f"cd {shlex.quote(str(REPO))} && MINIBUILD_ROOT={cmb.root} {sys.executable} -m "
           f"minibuild exec -it host sh; echo EXIT=$?; sleep 600")
    tmux("new-session", "-d", "-x", "90", "-y", "25", run)
    tmux.wait_screen("/ #")
    tmux("send-keys", "tty; stty size; ls -l /proc/self/fd/0; echo E$((2+2))N", "Enter")
    screen = tmux.wait_screen("E4N")
    assert re.search(r"^/dev/pts/\d+$", screen, re.M) and "25 90" in screen
    tmux("send-keys", "exit 4", "Enter")
    tmux.wait_screen("EXIT=4")
    out = cmb.run("exec", "-t", "host", "tty").stdout  # -t alone, our stdout a pipe
    assert re.fullmatch(r"/dev/pts/\d+\r\n", out), out
    cmb.run("kill", "host")
