"""A pty between the user's terminal (or a container's log) and a container's stdio.

`run -t`, a detached `run -dt` and `exec -t` do as runc does: the container allocates its pty
from its own devpts (so `tty` prints /dev/pts/0) and sends the master back over a unix socket,
the console socket (without `console`, a pty of ours: the unit tests'). Either way a
thread copies our input into the master and the master's output to our stdout (or the log),
and the caller's window size follows to the master, at the start and on each SIGWINCH.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import termios
import threading
import tty
from collections.abc import Callable

from minibuild.containers.logfile import write_all


class Terminal:
    """A pty whose slave is the container's stdio; a thread copies input in and output out.

    With `console`, the pty comes from the container: `console_fd` goes to its Process and
    the master arrives on our end of the socket once the command is about to start. `log`
    gets the output too (the container's log).
    """

    def __init__(self, input_fd: int | None, output_fd: int | None, console: bool = False,
                 log: Callable[[bytes], None] | None = None) -> None:
        self.master: int | None = None
        self.slave: int | None = None
        self._ours = self.console_fd = None
        if console:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._ours, self.console_fd = ours, theirs.detach()
        else:
            self.master, self.slave = os.openpty()
        self.input_fd, self.output_fd, self.log = input_fd, output_fd, log
        self._stop = threading.Event()
        self._saved = None
        self._old_winch = None
        self._size_fd: int | None = None
        self._thread = threading.Thread(target=self._relay, daemon=True)

    @property
    def stdio(self) -> tuple[int, int, int] | None:
        """The slave as 0, 1 and 2 (None: the container makes its own)."""
        return None if self.slave is None else (self.slave, self.slave, self.slave)

    def __enter__(self) -> Terminal:
        # the size follows our terminal even without -i (docker's -t alone does too)
        self._size_fd = next((fd for fd in (self.input_fd, self.output_fd)
                              if fd is not None and os.isatty(fd)), None)
        if self._size_fd is not None and threading.current_thread() is threading.main_thread():
            self._old_winch = signal.signal(signal.SIGWINCH, lambda *_: self.resize())
        self.resize()
        if self.input_fd is not None and os.isatty(self.input_fd):
            self._saved = termios.tcgetattr(self.input_fd)
            tty.setraw(self.input_fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        if self._saved is not None:
            termios.tcsetattr(self.input_fd, termios.TCSADRAIN, self._saved)
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
        for fd in (self.master, self.slave, self.console_fd):
            if fd is not None:
                os.close(fd)
        if self._ours is not None:
            self._ours.close()

    def resize(self) -> None:
        """The user's terminal size onto the pty (TIOCSWINSZ on the master)."""
        if self._size_fd is not None and self.master is not None:
            _copy_window_size(self._size_fd, self.master)

    def _relay(self) -> None:
        """Wait for the console's master, then copy until told to stop and the pty has
        nothing more to say."""
        if self.master is None and not self._receive_master():
            return
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
                if fd != self.master:
                    write_all(self.master, data)
                    continue
                if self.output_fd is not None:
                    write_all(self.output_fd, data)
                if self.log is not None:
                    self.log(data)

    def _receive_master(self) -> bool:
        """The master fd the container sends on the console socket; False if none came."""
        while not select.select([self._ours], [], [], 0.05)[0]:
            if self._stop.is_set():
                return False
        try:
            _, fds, _, _ = socket.recv_fds(self._ours, 16, 1)
        except OSError:
            return False
        if not fds:
            return False
        self.master = fds[0]
        self.resize()
        return True


def _copy_window_size(source: int, target: int) -> None:
    """One terminal's size onto another."""
    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)
    except OSError:
        pass
