"""The pipes between the parent and its helper tree, and the framed messages on the info pipe.

A message is one kind byte, a little-endian u32 length and the payload: I's host pid, or a
error (JSON) a child reported before it left.
"""

from __future__ import annotations

import os
import json
import struct

from minibuild.errors import BuildError, MinibuildError

MSG_PID, MSG_ERROR = b"P", b"E"


class Pipes:
    """Named pipe ends shared by the parent and the helper tree; each side closes the others'."""

    def __init__(self, *names: str) -> None:
        self.fds: dict[str, int] = {}
        try:
            for name in names:
                self.fds[f"{name}_r"], self.fds[f"{name}_w"] = os.pipe()
        except BaseException:
            self.close(*self.fds)
            raise

    def get(self, end: str) -> int | None:
        """The fd of a pipe end, or None if absent or closed."""
        return self.fds.get(end)

    def close(self, *ends: str) -> None:
        """Close these ends (absent or already closed ones are skipped)."""
        for end in ends:
            fd = self.fds.pop(end, None)
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> Pipes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(*list(self.fds))


def release(pipes: Pipes, end: str) -> None:
    """Write one byte on a pipe a child waits on, then close it (a reader gone already is
    fine: its own error is what the step reports)."""
    try:
        os.write(pipes.fds[end], b"j")
    except BrokenPipeError:
        pass
    pipes.close(end)


def send(fd: int, kind: bytes, payload: bytes) -> None:
    """Write one framed message; a single write keeps small frames atomic."""
    data = memoryview(kind + struct.pack("<I", len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def send_pid(fd: int, pid: int) -> None:
    """Tell the parent I's host pid."""
    send(fd, MSG_PID, struct.pack("<q", pid))


_FIELDS = ("file", "line", "column", "step", "hint", "exit_status")


def report(fd: int, exc: BaseException) -> None:
    """Send an exception to the parent as JSON: its class name, message and location fields.

    JSON, not pickle: the parent is root and must never unpickle bytes a child could shape.
    """
    try:
        fields = {name: getattr(exc, name, None) for name in _FIELDS}
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        body = {"class": type(exc).__name__, "message": message, "fields": fields}
        send(fd, MSG_ERROR, json.dumps(body, default=str).encode())
    except BaseException:
        pass  # the parent then sees exit status 125 without a message


def _error_class(name: str) -> type[MinibuildError]:
    """The MinibuildError subclass of that name (any module), else BuildError."""
    todo = [MinibuildError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return BuildError


def _error_from(payload: bytes) -> MinibuildError:
    """Rebuild a child's error: a MinibuildError of the same class and fields where we know it."""
    try:
        body = json.loads(payload)
        cls, message, fields = _error_class(str(body["class"])), str(body["message"]), body["fields"]
    except (ValueError, KeyError, TypeError):
        return BuildError("a sandbox helper sent an unreadable error report")
    error = cls.__new__(cls)
    MinibuildError.__init__(error, message, **{k: fields.get(k) for k in _FIELDS[:5]})
    if fields.get("exit_status") is not None or cls is BuildError:
        error.exit_status = fields.get("exit_status")
    return error


class Messages:
    """Accumulates info-pipe bytes into I's pid and the errors the children reported."""

    def __init__(self) -> None:
        self.buffer = b""
        self.init_pid: int | None = None
        self.errors: list[MinibuildError] = []

    def feed(self, data: bytes) -> None:
        """Take more bytes; decode every complete frame."""
        self.buffer += data
        while len(self.buffer) >= 5:
            size = struct.unpack("<I", self.buffer[1:5])[0]
            if len(self.buffer) < 5 + size:
                return
            kind, payload = self.buffer[:1], self.buffer[5:5 + size]
            self.buffer = self.buffer[5 + size:]
            if kind == MSG_PID:
                self.init_pid = struct.unpack("<q", payload)[0]
            else:
                self.errors.append(_error_from(payload))
