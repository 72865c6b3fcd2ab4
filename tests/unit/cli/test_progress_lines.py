"""The TTY progress rows of lines.py (shared by the live screen and the build memo's replay)
and how the replay picks TTY or plain output."""

from __future__ import annotations

from minibuild import __main__ as entry
from minibuild.build.memo import Step
from minibuild.cli import lines


def test_a_row_puts_the_time_at_the_right_edge_and_cuts_the_name():
    row = lines.progress_row("[stage-0 1/2] RUN make", 1.25, 40)
    assert row == " => [stage-0 1/2] RUN make" + " " * 9 + " 1.2s" and len(row) == 40
    assert lines.progress_row("x" * 50, 0.0, 30) == " => " + "x" * 20 + "… 0.0s"
    assert lines.progress_row("[stage-0 1/2] RUN make", 0.0, 12) == " => [stage-…"
    assert lines.progress_row("RUN " + "y" * 60, 2.0, 60, "no changes") == \
        " => RUN " + "y" * 35 + "… no changes 2.0s"  # the name is cut, the status kept
    assert lines.progress_row("RUN x", 2.0, 30, "a long status note") == " => RUN x" + " " * 16 + " 2.0s"


def test_the_memo_replay_on_a_terminal_draws_the_finished_frame_without_rich():
    steps = [Step(1, 2, "stage-0", "FROM docker.io/library/base:1", False),
             Step(2, 2, "stage-0", "RUN make", True)]
    frame = lines.cached_frame(steps, 60, color=False)
    assert frame[0] == "[+] Building 0.0s (2/2) FINISHED"
    assert frame[1].startswith(" => [stage-0 1/2] FROM docker.io/library/base:1")
    assert frame[2].startswith(" => CACHED [stage-0 2/2] RUN make") and frame[2].endswith(" 0.0s")
    assert lines.cached_frame(steps, 50, color=True)[2].startswith("\x1b[34m => CACHED")


def test_the_memo_replay_follows_the_progress_flag(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(entry.sys, "stderr", Terminal())
    assert entry._tty_progress(["build", "."])
    assert not entry._tty_progress(["build", "--progress=plain", "."])
    assert not entry._tty_progress(["build", "--progress", "plain", "."])
    monkeypatch.setattr(Terminal, "isatty", lambda self: False)
    assert not entry._tty_progress(["build", "."])
    assert entry._tty_progress(["build", "--progress=tty", "."])


def test_no_color_turns_the_replay_colours_off(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(entry.sys, "stderr", Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not entry._color()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "xterm")
    assert entry._color()
