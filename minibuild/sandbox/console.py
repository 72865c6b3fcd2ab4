"""A container's console as runc makes it: a pty from the container's own devpts, whose master
goes back to the caller over a unix socket (the console socket) and whose slave becomes the
command's stdio and controlling terminal, so `tty` inside prints /dev/pts/0."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

_TIOCSPTLCK = 0x40045431  # unlock the slave of a new master
_TIOCGPTPEER = 0x5441  # open the slave through the master (no lookup of /dev/pts/N by name)


def open_console(console_fd: int, uid: int) -> int:
    """Inside the root (its /dev mounted): a new pty; send its master on `console_fd`, give
    the slave to `uid` (the command's user, as runc does); the slave's fd."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        os.fchown(slave, uid, -1)
        with socket.socket(fileno=os.dup(console_fd)) as sock:
            socket.send_fds(sock, [b"m"], [master])
    finally:
        os.close(master)
    return slave
