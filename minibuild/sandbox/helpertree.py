"""The parent's handle on a forked helper tree (C, I, X): it moves the helpers into the step's
cgroup, streams their pipes (output, info, stdin), holds I by a pidfd, and stops and reaps them.

sandbox.py decides what runs and starts a tree with `start`; `drive` pumps it to its end.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable

from minibuild.sandbox import linux
from minibuild.sandbox.cgroups import Cgroup
from minibuild.sandbox.channel import Messages, Pipes, release
from minibuild.sandbox.children import child_main


class _Feeder:
    """Writes the step's stdin without blocking, so a chatty process cannot deadlock us."""

    def __init__(self, fd: int, data: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd, self.data, self.pos = fd, memoryview(data), 0

    def step(self) -> bool:
        """Write what the pipe takes; True when everything is written or the reader is gone."""
        try:
            self.pos += os.write(self.fd, self.data[self.pos:self.pos + 65536])
        except BlockingIOError:
            return False
        except (BrokenPipeError, ConnectionResetError):
            return True
        return self.pos >= len(self.data)


class HelperTree:
    """The parent's handle on a helper tree: streams its pipes, stops and reaps it."""

    def __init__(self, pid: int, pipes: Pipes, on_start: Callable[[int], None] | None = None,
                 group: Cgroup | None = None) -> None:
        self.pid: int | None = pid
        self.pipes = pipes
        self.messages = Messages()
        self.init_fd: int | None = None
        self.on_start = on_start
        self.group = group

    def pump(self, stdin: bytes | None, on_output: Callable[[bytes], None]) -> None:
        """Relay output and info until both pipes reach EOF, feeding stdin meanwhile."""
        if self.group is not None:  # C mounts meanwhile: the move's wait is mostly hidden
            self.group.add(self.pid)
        poller = select.poll()
        ends = (self.pipes.get("out_r"), self.pipes.get("info_r"))
        readers = {fd for fd in ends if fd is not None}
        for fd in readers:
            poller.register(fd, select.POLLIN)
        feeder = _Feeder(self.pipes.fds["stdin_w"], stdin) if stdin is not None else None
        if feeder is not None:
            poller.register(feeder.fd, select.POLLOUT)
        while readers:
            for fd, _ in poller.poll():
                if feeder is not None and fd == feeder.fd:
                    if feeder.step():
                        poller.unregister(fd)
                        self.pipes.close("stdin_w")
                        feeder = None
                    continue
                data = os.read(fd, 65536)
                if not data:
                    poller.unregister(fd)
                    readers.discard(fd)
                elif fd == self.pipes.get("out_r"):
                    on_output(data)
                else:
                    self._on_info(data)

    def _on_info(self, data: bytes) -> None:
        """Decode messages; hold I by a pidfd before letting C reap it (ack)."""
        self.messages.feed(data)
        if self.messages.init_pid is not None and self.init_fd is None:
            self.init_fd = os.pidfd_open(self.messages.init_pid)
            if self.group is not None:  # I may have forked before C was moved: move it too
                self.group.add(self.messages.init_pid)
                release(self.pipes, "joined_w")  # now I may fork the command
            if self.on_start is not None:  # before the ack: I cannot be reaped (pid reused) yet
                self.on_start(self.messages.init_pid)
            os.write(self.pipes.fds["ack_w"], b"k")

    def wait(self) -> int:
        """Reap C; its raw wait status."""
        assert self.pid is not None
        status = os.waitpid(self.pid, 0)[1]
        self.pid = None
        return status

    def stop(self) -> None:
        """Kill the step's pid-ns init (the kernel kills the rest) or C, and reap C."""
        if self.pid is None:
            return
        if self.init_fd is not None:
            linux.pidfd_kill(self.init_fd)
            if _reaped_within(self.pid, 2.0):
                self.pid = None
                return
        linux.kill(self.pid, signal.SIGKILL)
        _reap(self.pid)
        self.pid = None

    def close(self) -> None:
        """Release every fd the parent holds."""
        self.pipes.close(*list(self.pipes.fds))
        if self.init_fd is not None:
            os.close(self.init_fd)
            self.init_fd = None

    def raise_reported(self) -> None:
        """Re-raise the first error a child reported."""
        if self.messages.errors:
            raise self.messages.errors[0]


def _reaped_within(pid: int, seconds: float) -> bool:
    """Poll-reap a child for a while; True once it is reaped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
        time.sleep(0.002)
    return False


def _reap(pid: int) -> None:
    """Reap a SIGKILLed child even if another Ctrl-C arrives meanwhile."""
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except KeyboardInterrupt:
            continue


def start(pipes: Pipes, body: Callable[[], int],
           on_start: Callable[[int], None] | None = None, group: Cgroup | None = None) -> HelperTree:
    """Fork a helper running `body`; close the child's pipe ends in the parent."""
    pid = os.fork()
    if pid == 0:
        child_main(pipes, body)
    step = HelperTree(pid, pipes, on_start, group)
    pipes.close("out_w", "info_w", "stdin_r", "ack_r", "joined_r")
    return step


def drive(step: HelperTree, stdin: bytes | None, on_output: Callable[[bytes], None]) -> int:
    """Pump a started helper to its end; on any exception (Ctrl-C too) stop it first."""
    try:
        step.pump(stdin, on_output)
        status = step.wait()
    except BaseException:
        step.stop()
        raise
    finally:
        step.close()
    step.raise_reported()
    return status
