"""The pty relay of `run -t` and `exec -t`, with pipes standing in for the user's terminal."""

from __future__ import annotations

import os
import select
import time

from minibuild.containers.terminal import Terminal


def read_until(fd: int, wanted: bytes, seconds: float = 5.0) -> bytes:
    data, deadline = b"", time.monotonic() + seconds
    while wanted not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


def test_the_stdio_is_the_pty_slave_three_times():
    read_end, write_end = os.pipe()
    try:
        with Terminal(None, write_end) as term:
            assert term.stdio == (term.slave,) * 3
            assert os.isatty(term.slave)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_what_the_command_writes_reaches_the_output():
    read_end, write_end = os.pipe()
    try:
        with Terminal(None, write_end) as term:
            os.write(term.slave, b"hello\n")
            assert read_until(read_end, b"hello").startswith(b"hello\r\n")  # the tty's ONLCR
    finally:
        os.close(read_end)
        os.close(write_end)


def test_our_input_reaches_the_command():
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        with Terminal(in_read, out_write) as term:
            os.write(in_write, b"typed\n")
            assert b"typed" in read_until(term.slave, b"typed")
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            os.close(fd)


def test_leaving_closes_the_pty():
    read_end, write_end = os.pipe()
    try:
        term = Terminal(None, write_end)
        with term:
            pass
        for fd in (term.master, term.slave):
            try:
                os.fstat(fd)
                still_open = True
            except OSError:
                still_open = False
            assert not still_open
    finally:
        os.close(read_end)
        os.close(write_end)
