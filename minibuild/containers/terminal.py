"""A pty between the user's terminal (or a container's log) and a container's stdio.

`run -t`, `exec -t` and a detached `run -dt` give the command a pty slave as its stdio; a thread
copies our input into the master and the master's output to our stdout (or the log).
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty


class Terminal:
    """A pty whose slave is the container's stdio; a thread copies input in and output out."""

    def __init__(self, input_fd: int | None, output_fd: int) -> None:
        self.master, self.slave = os.openpty()
        self.input_fd, self.output_fd = input_fd, output_fd
        self._stop = threading.Event()
        self._saved = None
        self._thread = threading.Thread(target=self._relay, daemon=True)

    @property
    def stdio(self) -> tuple[int, int, int]:
        """The slave as 0, 1 and 2."""
        return (self.slave, self.slave, self.slave)

    def __enter__(self) -> Terminal:
        if self.input_fd is not None and os.isatty(self.input_fd):
            self._saved = termios.tcgetattr(self.input_fd)
            _copy_window_size(self.input_fd, self.master)
            tty.setraw(self.input_fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        if self._saved is not None:
            termios.tcsetattr(self.input_fd, termios.TCSADRAIN, self._saved)
        for fd in (self.master, self.slave):
            os.close(fd)

    def _relay(self) -> None:
        """Copy until told to stop and the pty has nothing more to say."""
        sources = [self.master] + ([self.input_fd] if self.input_fd is not None else [])
        while True:
            ready = select.select(sources, [], [], 0.05)[0]
            if not ready and self._stop.is_set():
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: no slave left open
                    data = b""
                if not data:
                    sources.remove(fd)
                    if fd == self.master:
                        return
                    continue
                _write_all(self.output_fd if fd == self.master else self.master, data)


def _copy_window_size(source: int, target: int) -> None:
    """The user's terminal size onto the pty."""
    import fcntl
    import struct

    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (or the reader is gone)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return
