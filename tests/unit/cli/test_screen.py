"""TTY build progress (screen.py) on a fake terminal: a rich Console writing to a string, with
a clock moved by hand, rendered frame by frame."""

from __future__ import annotations

import io

from rich.console import Console

from minibuild.cli.screen import TAIL, TtyReporter


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal(width: int = 80, height: int = 40, **options) -> Console:
    """A fake terminal (colours on unless told otherwise) that records what it shows."""
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True,
                   color_system="standard", record=True, **options)


def frame(reporter: TtyReporter, console: Console | None = None) -> list[str]:
    """The lines the reporter's screen shows now, as text."""
    console = console or terminal()
    console.print(reporter.screen)
    return console.export_text().rstrip("\n").split("\n")


def reporter_at(clock: Clock, width: int = 80) -> TtyReporter:
    reporter = TtyReporter(terminal(width), clock=clock)
    reporter._live.auto_refresh = False  # frames only when the test renders one
    return reporter


def test_the_header_shows_elapsed_time_and_steps_done_of_all():
    clock = Clock()
    reporter = reporter_at(clock)
    reporter.step(1, 3, "stage-0", "FROM docker.io/library/debian:12")
    clock.now += 0.4
    reporter.done(0.4, "")
    reporter.step(2, 3, "stage-0", "RUN make")
    clock.now += 12.0
    lines = frame(reporter)
    assert lines[0] == "[+] Building 12.4s (1/3)"
    assert lines[1].startswith(" => [stage-0 1/3] FROM docker.io/library/debian:12 ")
    assert lines[1].endswith(" 0.4s") and lines[2].endswith(" 12.0s") and len(lines[1]) == 80
    reporter.close()


def test_a_running_step_shows_its_last_lines_and_folds_to_one_line_when_done():
    clock = Clock()
    reporter = reporter_at(clock)
    reporter.step(1, 2, "stage-0", "RUN build")
    reporter.output(b"".join(b"line %d\n" % i for i in range(1, 11)))
    reporter.output(b"partial")
    lines = frame(reporter)
    assert lines[2:] == [f" => => # line {i}" for i in range(11 - TAIL + 1, 11)] + \
        [" => => # partial"]
    assert len(lines) == 2 + TAIL
    clock.now += 1.5
    reporter.done(1.5, "2MB in layer abc, 10MB/s")
    reporter.step(2, 2, "stage-0", "COPY . /app")
    reporter.done(0.0, "CACHED")
    reporter.close()
    lines = frame(reporter)
    assert lines[0] == "[+] Building 1.5s (2/2) FINISHED"
    assert lines[1].startswith(" => [stage-0 1/2] RUN build 2MB in layer abc, 10MB/s ")
    assert lines[2].startswith(" => CACHED [stage-0 2/2] COPY . /app ") and len(lines) == 3


def test_carriage_return_progress_redraws_one_line_and_the_phase_shows_bytes():
    clock = Clock()
    reporter = reporter_at(clock)
    reporter.step(1, 1, "stage-0", "RUN wget")
    for percent in range(0, 101, 5):
        reporter.output(b"\rsaving %3d%% [%-20s]" % (percent, b"=" * (percent // 5)))
    reporter.phase("snapshot 3MB written, 12MB/s")
    lines = frame(reporter)
    assert lines[1].startswith(" => [stage-0 1/1] RUN wget snapshot 3MB written, 12MB/s ")
    assert lines[2:] == [" => => # saving 100% [====================]"]
    reporter.close()


def test_a_failed_step_is_red_and_keeps_more_of_its_output():
    clock = Clock()
    console = terminal()
    reporter = TtyReporter(console, clock=clock)
    reporter.step(1, 2, "stage-0", "FROM scratch")
    reporter.done(0.0, "")
    reporter.step(2, 2, "stage-0", "RUN make test")
    reporter.output(b"".join(b"test %d failed\n" % i for i in range(1, 13)))
    clock.now += 2.0
    reporter.close(failed=True)  # the engine raised: the open step failed
    text = console.file.getvalue()
    assert "\x1b[1;31m => ERROR [stage-0 2/2] RUN make test" in text
    assert "\x1b[31m => => # test 12 failed" in text and "test 1 failed" in text
    lines = frame(reporter)
    assert lines[0] == "[+] Building 2.0s (1/2) FAILED"
    assert lines[2].endswith(" 2.0s") and len(lines) == 3 + 12


def test_a_narrow_terminal_cuts_rows_to_its_width_and_drops_the_time_when_too_narrow():
    clock = Clock()
    reporter = reporter_at(clock, width=30)
    reporter.step(1, 1, "stage-0", "RUN echo a very long command line that cannot fit")
    reporter.output(b"an output line far wider than thirty columns\n")
    lines = frame(reporter, terminal(width=30))
    assert all(len(line) <= 30 for line in lines)
    assert lines[1] == " => [stage-0 1/1] RUN ec… 0.0s"
    assert lines[2] == " => => # an output line far w…"
    lines = frame(reporter, terminal(width=14))
    assert lines[1] == " => [stage-0 …" and all(len(line) <= 14 for line in lines)
    reporter.close()


def test_a_frame_taller_than_the_terminal_keeps_the_header_and_the_newest_rows():
    clock = Clock()
    reporter = reporter_at(clock)
    for number in range(1, 21):
        reporter.step(number, 21, "stage-0", f"RUN step {number}")
        reporter.done(0.1, "")
    reporter.step(21, 21, "stage-0", "RUN last")
    lines = frame(reporter, terminal(height=8))
    assert lines[0].startswith("[+] Building") and lines[-1].startswith(" => [stage-0 21/21] RUN last")
    assert len(lines) == 7  # a line left for the cursor
    reporter.close()
    assert len(frame(reporter, terminal(height=8))) == 22  # the last frame: every row


def test_no_color_turns_colours_off():
    clock = Clock()
    console = terminal(no_color=True)
    reporter = TtyReporter(console, clock=clock)
    reporter.step(1, 1, "stage-0", "RUN false")
    reporter.close(failed=True)
    assert "ERROR [stage-0 1/1] RUN false" in console.file.getvalue()
    assert "\x1b[31m" not in console.file.getvalue() and "\x1b[1;31m" not in console.file.getvalue()


def test_output_does_not_redraw_the_screen_each_time():
    """A chatty step only feeds its transcript; frames come from the Live thread's clock."""
    clock = Clock()
    console = terminal()
    reporter = TtyReporter(console, clock=clock, refresh=0.5)
    reporter.step(1, 1, "stage-0", "RUN yes")
    before = len(console.file.getvalue())
    for _ in range(2000):
        reporter.output(b"y\n")
    assert len(console.file.getvalue()) - before < 2000  # at most a frame or so, not 2000
    reporter.close()


def test_an_interrupted_build_marks_its_open_step_canceled_in_yellow():
    clock = Clock()
    console = terminal()
    reporter = TtyReporter(console, clock=clock)
    reporter.step(1, 2, "stage-0", "RUN sleep 100")
    reporter.output(b"waiting\n")
    clock.now += 3.0
    reporter.close(failed=True, canceled=True)
    assert "\x1b[1;33m => CANCELED [stage-0 1/2] RUN sleep 100" in console.file.getvalue()
    lines = frame(reporter)
    assert lines[0] == "[+] Building 3.0s (0/2) CANCELED" and lines[2] == " => => # waiting"
