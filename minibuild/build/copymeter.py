"""Bytes a COPY/ADD wrote, counted by the forked copier in a shared page and read by the build:
what TTY progress shows while a big copy runs (`copy 12MB copied, 40MB/s`) and the step's
final note, as the snapshot's Meter does for the layer being stored.

An anonymous shared mapping made before the fork is the same memory in the copier: one 8-byte
counter written by the child alone, no pipe or message to pump.
"""

from __future__ import annotations

import mmap
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from minibuild.text import human_size

_COUNTER = struct.Struct("Q")


class CopyMeter:
    """A byte counter shared with forked children; reports progress while watched."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._page = mmap.mmap(-1, _COUNTER.size)  # MAP_SHARED | MAP_ANONYMOUS
        self.clock = clock
        self.started: float | None = None
        self.seconds = 0.0

    def add(self, count: int) -> None:
        """In the copier: `count` more bytes written."""
        _COUNTER.pack_into(self._page, 0, self.copied + count)

    @property
    def copied(self) -> int:
        """The bytes counted so far."""
        return _COUNTER.unpack_from(self._page, 0)[0]

    def reset(self) -> None:
        """Count from zero (a copy started again)."""
        _COUNTER.pack_into(self._page, 0, 0)

    def progress(self) -> str:
        """`copy 12MB copied, 40MB/s` since `watching` began."""
        seconds = self.clock() - (self.started or 0.0)
        rate = int(self.copied / seconds) if seconds > 0 else 0
        return f"copy {human_size(self.copied)} copied, {human_size(rate)}/s"

    def note(self) -> str:
        """`4.19MB copied, 40MB/s` for the step's last line when the copy took long enough to
        say (0.1 s); else ""."""
        if self.seconds < 0.1:
            return ""
        return f"{human_size(self.copied)} copied, {human_size(int(self.copied / self.seconds))}/s"

    @contextmanager
    def watching(self, report: Callable[[str], None], every: float = 0.25) -> Iterator[None]:
        """Report `progress()` every `every` seconds from a thread while the body runs."""
        self.reset()
        self.started = self.clock()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                report(self.progress())
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.seconds = self.clock() - self.started
