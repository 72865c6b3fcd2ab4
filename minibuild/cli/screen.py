"""Build progress on a terminal, drawn as BuildKit's `--progress=tty` draws it:

    [+] Building 12.3s (4/9)
     => [stage-0 1/9] FROM docker.io/library/debian:12                    0.0s
     => CACHED [stage-0 2/9] RUN apt-get update                            0.0s
     => [stage-0 3/9] RUN pip install flask snapshot 3MB (12MB/s)          4.1s
     => => # Downloading flask-3.0.0-py3-none-any.whl (101 kB)

A running step shows its last few output lines (`\\r` redraws the current one); a finished step
folds to one line with its time; a failed one turns red and keeps more of its output. The
frame is redrawn at most REFRESH times a second by rich's Live thread, whatever the step
prints, and cut to the terminal's width and height (every row is printed once it ends).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from minibuild.cli.lines import output_row, progress_header, progress_row, step_header
from minibuild.cli.transcript import Transcript

TAIL = 6          # output lines shown under a running step
FAILED_TAIL = 20  # output lines kept under a failed step
REFRESH = 10      # redraws per second, at most
CACHED = "CACHED"


@dataclass
class StepView:
    """One step as the screen shows it."""

    name: str
    started: float
    transcript: Transcript = field(default_factory=lambda: Transcript(keep=FAILED_TAIL))
    seconds: float | None = None  # set when the step ended
    note: str = ""
    phase: str = ""
    failed: bool = False
    canceled: bool = False  # interrupted (Ctrl-C), not failed by itself


class Screen:
    """The frame: a header with the elapsed time and count, a row per step, the running
    step's last lines. Read by the refresh thread, written by the build: hence the lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.steps: list[StepView] = []
        self.total = 0
        self.final = False  # the last frame: all rows, not only those the terminal holds
        self.failed = False
        self.canceled = False
        self.lock = threading.Lock()
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None

    def rows(self, width: int, height: int | None = None) -> list[tuple[str, str]]:
        """The frame's lines with their styles; the header and the last rows that fit `height`."""
        rows = [(self._header(), "")]
        for step in self.steps:
            rows += self._step_rows(step, width)
        if height is not None and len(rows) > height > 1:
            rows = [rows[0], *rows[len(rows) - height + 1:]]
        return rows

    def finish(self, failed: bool, canceled: bool = False) -> None:
        """The build ended: an open step failed (or was interrupted); show every row."""
        now = self._clock()
        for step in self.steps:
            if step.seconds is None:
                step.seconds, step.failed, step.phase = now - step.started, True, ""
                step.canceled = canceled
        self.failed, self.canceled, self.final, self._ended = failed, canceled, True, now

    def _header(self) -> str:
        done = sum(1 for s in self.steps if s.seconds is not None and not s.failed)
        state = ("" if not self.final else "CANCELED" if self.canceled
                 else "FAILED" if self.failed else "FINISHED")
        return progress_header((self._ended or self._clock()) - self._started, done,
                               max(self.total, len(self.steps)), state)

    def _step_rows(self, step: StepView, width: int) -> list[tuple[str, str]]:
        if step.failed:  # BuildKit's words: ERROR, or CANCELED for an interrupted step
            tail = step.transcript.tail[-FAILED_TAIL:]
            word, style = ("CANCELED", "yellow") if step.canceled else ("ERROR", "red")
            return [(progress_row(f"{word} {step.name}", step.seconds or 0, width), f"bold {style}"),
                    *((output_row(line, width), style) for line in tail)]
        if step.seconds is not None:
            cached = step.note == CACHED
            name = f"CACHED {step.name}" if cached else step.name
            return [(progress_row(name, step.seconds, width, "" if cached else step.note), "blue")]
        row = progress_row(step.name, self._clock() - step.started, width, step.phase)
        return [(row, ""), *((output_row(line, width), "dim") for line in step.transcript.tail[-TAIL:])]

    def __rich_console__(self, console, options) -> Iterator:
        from rich.text import Text

        height = None if self.final else options.size.height - 1  # a line for the cursor
        with self.lock:
            rows = self.rows(options.max_width, height)
        for text, style in rows:
            yield Text(text, style=style, no_wrap=True, overflow="crop")


class TtyReporter:
    """Progress on a terminal (`--progress=tty`, and `auto` when stderr is one): a live Screen."""

    def __init__(self, console=None, *, refresh: float = REFRESH,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True, highlight=False)
        self.screen = Screen(clock)
        self._clock = clock
        self._live = Live(self.screen, console=self.console, refresh_per_second=refresh,
                          redirect_stdout=False)
        self._running = False

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts: a new row (the first one starts the live display)."""
        with self.screen.lock:
            self.screen.total = total
            self.screen.steps.append(StepView(step_header(stage, number, total, text),
                                              self._clock()))
        if not self._running:
            self._live.start()
            self._running = True

    def output(self, data: bytes) -> None:
        """Output of the running step: into its transcript (drawn at the next refresh)."""
        with self.screen.lock:
            if self.screen.steps:
                self.screen.steps[-1].transcript.feed(data)

    def phase(self, text: str) -> None:
        """A phase inside the step (snapshot and its bytes), shown after its name."""
        with self.screen.lock:
            if self.screen.steps:
                self.screen.steps[-1].phase = text

    def done(self, seconds: float, note: str) -> None:
        """The step ended: it folds to one line."""
        with self.screen.lock:
            step = self.screen.steps[-1]
            step.transcript.flush()
            step.seconds, step.note, step.phase = seconds, note, ""

    def close(self, failed: bool = False, canceled: bool = False) -> None:
        """The build ended (`canceled`: by Ctrl-C): draw the last frame in full, stop redrawing."""
        with self.screen.lock:
            self.screen.finish(failed, canceled)
        if self._running:
            self._live.stop()
            self._running = False
            if not self.console.is_terminal:  # Live ends its frame with a newline on terminals only
                self.console.line()
