"""TTY build progress on a real terminal: tmux runs `minibuild build` in a pane and the test reads
the screen (`tmux capture-pane`): a `\\r` progress line redrawn in place, finished steps folded,
a failed step red with its output kept, the full FROM name, a narrow terminal.

With MINIBUILD_CAPTURES=DIR the screens are also written there (the closing note's captures)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, write_context

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

BUILDFILE = r"""FROM base:1.0
RUN i=0; while [ $i -lt 30 ]; do i=$((i+1)); printf '\rdownloading %3d%% [%-30s]' $((i*100/30)) "$(printf '%*s' $i '' | tr ' ' '=')"; sleep 0.1; done; echo; for n in 1 2 3 4 5 6 7 8; do echo fetched-$n; done
COPY blob /blob
ENV DONE=1
RUN echo about to fail; for n in 1 2 3 4 5 6 7 8 9 10 11 12; do echo check-$n failed; done; exit 3
"""
HEADER = re.compile(r"^\[\+\] Building \d+\.\ds \((\d+)/5\)")


class Pane:
    """One tmux server of its own (a unique socket), one window of a given size."""

    def __init__(self, width: int, height: int) -> None:
        self.socket = f"minibuild-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self, command: str) -> None:
        """Run `command` in a new window; the shell stays so the screen can be read after."""
        self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height), "-s", "t",
                  f"{command}; echo EXIT=$?; sleep 600")

    def screen(self, colours: bool = False) -> str:
        """The visible screen as text (with colour escapes when asked)."""
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "t")

    def wait_for(self, predicate, timeout: float = 120.0) -> str:
        """Poll the screen until `predicate(screen)` holds; the screen then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"screen never matched:\n{self.screen()}")

    def kill(self) -> None:
        """End this server (and what runs in it), and remove its socket file."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / self.socket).unlink(missing_ok=True)


@pytest.fixture
def pane_factory():
    panes: list[Pane] = []

    def make(width: int = 100, height: int = 40) -> Pane:
        panes.append(Pane(width, height))
        return panes[-1]

    yield make
    for pane in panes:
        pane.kill()


def build_command(mb, context: Path, *args: str) -> str:
    """The shell command that runs this worktree's minibuild on the test's store, colours on
    (and no COLUMNS or LINES from the test's environment: the size is the pane's)."""
    env = (f"env -u NO_COLOR -u COLUMNS -u LINES PYTHONPATH={REPO} MINIBUILD_ROOT={mb.root} "
           f"MINIBUILD_REGISTRIES_CONF={os.devnull} TERM=xterm-256color")
    return f"cd {REPO} && {env} {sys.executable} -m minibuild build {' '.join(args)} {context}"


def save(name: str, text: str) -> None:
    """Keep a screen for the closing note when MINIBUILD_CAPTURES names a directory."""
    directory = os.environ.get("MINIBUILD_CAPTURES")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / name).write_text(text.rstrip("\n") + "\n")


def rows(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if line.strip()]


def test_tty_progress_redraws_folds_and_keeps_a_failure_on_screen(mb, tmp_path, pane_factory):
    context = write_context(tmp_path / "ctx", BUILDFILE, {"blob": os.urandom(4 << 20)})
    pane = pane_factory(100, 40)
    pane.start(build_command(mb, context, "-t", "tty:1"))

    running = pane.wait_for(lambda s: re.search(r"=> => # downloading +[1-9]\d% ", s) is not None)
    save("tty-progress-running.txt", running)
    lines = rows(running)
    assert HEADER.match(lines[0]), lines[0]
    assert any("FROM docker.io/library/base:1.0" in line for line in lines)
    progress = [line for line in lines if line.startswith(" => => # downloading")]
    assert len(progress) == 1 and progress[0].count("downloading") == 1  # redrawn, not glued
    assert all(len(line) <= 100 for line in lines)

    final = pane.wait_for(lambda s: "EXIT=" in s)
    coloured = pane.screen(colours=True)
    save("tty-progress-failed.txt", final)
    lines = rows(final)
    assert re.match(r"^\[\+\] Building \d+\.\ds \(4/5\) FAILED", lines[0]), lines[0]
    assert not any(line.startswith(" => => # ") and ("downloading" in line or "fetched-" in line)
                   for line in lines)  # the finished step folded
    run_row = next(line for line in lines if "[stage-0 2/5] RUN" in line)
    assert re.search(r" \d+\.\ds$", run_row)
    assert re.search(r"\[stage-0 3/5\] COPY blob /blob 4.19MB in layer [0-9a-f]{12}", final)
    error = lines.index(next(line for line in lines if "ERROR [stage-0 5/5] RUN" in line))
    assert lines[error + 1:error + 14] == [" => => # about to fail"] + \
        [f" => => # check-{n} failed" for n in range(1, 13)]
    assert "EXIT=1" in final and "step 5/5" in final
    error_row = next(line for line in coloured.splitlines() if "ERROR [stage-0 5/5]" in line)
    assert "31m" in error_row  # red


def test_a_narrow_terminal_gets_rows_cut_to_its_width(mb, tmp_path, pane_factory):
    context = write_context(tmp_path / "ctx", BUILDFILE, {"blob": b"small"})
    pane = pane_factory(42, 30)
    pane.start(build_command(mb, context))
    final = pane.wait_for(lambda s: "EXIT=" in s)
    save("tty-progress-narrow.txt", final)
    lines = rows(final)
    progress = lines[:lines.index(next(line for line in lines if line.startswith("error:")))]
    assert all(len(line) <= 42 for line in progress)
    assert any(line.startswith(" => ERROR [stage-0 5/5] RUN") for line in progress)
    assert progress[0].endswith("FAILED")


def test_a_memo_answer_on_a_terminal_draws_the_finished_frame(mb, tmp_path, pane_factory):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo hi > /hi\nENV A=1\n")
    mb.run("build", "-t", "memo:1", str(context))  # --progress auto off a terminal: plain
    time.sleep(0.3)  # inputs written just now are too fresh for the memo
    pane = pane_factory(80, 30)
    command = build_command(mb, context, "-t", "memo:1")
    # In one shell (the memo key holds the environment, TMUX included): the first terminal
    # build writes the memo, the second is answered from it.
    pane.start(f"{command} >/dev/null 2>&1; sleep 0.3; clear; {command}")
    final = pane.wait_for(lambda s: "EXIT=" in s)
    save("tty-progress-memo.txt", final)
    lines = rows(final)
    assert lines[0] == "[+] Building 0.0s (3/3) FINISHED"
    assert lines[2].startswith(" => CACHED [stage-0 2/3] RUN echo hi > /hi")
    assert lines[2].endswith(" 0.0s") and len(lines[2]) == 80
    assert lines[4].startswith("Built sha256:") and "EXIT=0" in final
