"""A container's log as docker's json-file driver keeps it: one JSON object per line of output,
`{"log": TEXT, "stream": "stdout"|"stderr", "time": RFC3339Nano}`, so `logs -t`, `--since` and
`--until` know when each line came. The supervisor writes it from the container's stdout and
stderr pipes (or its pty), copying them to our terminal too when `run` is in the foreground.

A log an older minibuild wrote (raw output) still reads: a line that is not JSON is stdout
with no time. A piece of output without its newline yet is a record of its own; it is printed
as it came, its timestamp only where a line starts.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import select
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_RELAY_JOIN = 10.0  # seconds to wait for the pipes' last output once the container ended


@dataclass(frozen=True)
class Record:
    """One piece of output: its bytes, stream and time (ns since the epoch; 0: unknown)."""

    data: bytes
    stream: str = "stdout"
    time_ns: int = 0

    def starts_line(self, previous: Record | None) -> bool:
        """Whether this piece begins a line (the stream's previous piece ended one)."""
        return previous is None or previous.data.endswith(b"\n")


def timestamp(time_ns: int) -> str:
    """docker's RFC3339Nano with nine digits: 2026-12-03T06:12:01.123456789Z."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> int:
    """An RFC3339 time (fraction optional, Z or an offset) as ns since the epoch; ValueError."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(text)
    seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    zone = match.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((match.group(2) or "0").ljust(9, "0"))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_moment(text: str, now_ns: int) -> int:
    """A --since/--until value as docker takes it: RFC3339, a Unix time (`1700000000.5`) or a
    duration before now (`10m`, `1h30m`); ns since the epoch; ValueError."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1e9)
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+", text):
        return now_ns - int(sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    return parse_time(text)


def parse_line(line: bytes, newline: bytes = b"") -> Record:
    """One line of the log file as a record (a raw line of an older log: stdout, no time,
    `newline` given back)."""
    try:
        entry = json.loads(line)
        data = entry["log"].encode("utf-8", "surrogateescape")
        return Record(data, entry.get("stream", "stdout"), parse_time(entry["time"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return Record(line + newline)


def split_records(data: bytes, raw_tail: bool) -> tuple[list[Record], bytes]:
    """The records of complete lines in `data`, and what follows the last newline (itself a
    raw record when `raw_tail`: an older log's last line without a newline)."""
    lines = data.split(b"\n")
    rest = lines.pop()
    records = [parse_line(line, b"\n") for line in lines]
    if raw_tail and rest:
        records.append(parse_line(rest))
        rest = b""
    return records, rest


def tail(records: Sequence[Record], count: int) -> list[Record]:
    """The records of the last `count` lines."""
    starts = [i for i, r in enumerate(records) if r.starts_line(_previous(records, i))]
    if count >= len(starts):
        return list(records)
    return list(records[starts[-count]:]) if count > 0 else []


def _previous(records: Sequence[Record], index: int) -> Record | None:
    """The record before `index` of the same stream."""
    for earlier in reversed(records[:index]):
        if earlier.stream == records[index].stream:
            return earlier
    return None


class Printer:
    """Records as `logs` prints them: the bytes as they came, with -t each line prefixed
    with its time."""

    def __init__(self, timestamps: bool) -> None:
        self.timestamps = timestamps
        self._last: dict[str, Record] = {}

    def render(self, records: Iterable[Record]) -> bytes:
        """The bytes of `records`, in order."""
        out = bytearray()
        for record in records:
            if self.timestamps and record.starts_line(self._last.get(record.stream)):
                out += (timestamp(record.time_ns) + " ").encode() if record.time_ns else b""
            out += record.data
            self._last[record.stream] = record
        return bytes(out)


class LogWriter:
    """Appends records to a container's log file (one write each: O_APPEND keeps them whole)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, stream: str, data: bytes) -> None:
        """One record per line (and one for a piece without its newline yet)."""
        now_ns = time.time_ns()
        for piece in _pieces(data):
            entry = {"log": piece.decode("utf-8", "surrogateescape"), "stream": stream,
                     "time": timestamp(now_ns)}
            os.write(self.fd, json.dumps(entry).encode() + b"\n")

    def stdout(self, data: bytes) -> None:
        """write("stdout", data): a Terminal's sink."""
        self.write("stdout", data)


def _pieces(data: bytes) -> Iterator[bytes]:
    """`data` cut after each newline."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


class Capture:
    """The container's stdout and stderr as pipes one thread copies into the log (and to
    `tee`'s fds: our stdout and stderr, for a foreground run). One thread, stdout first when
    both have output: the log keeps the order a program wrote them in as well as it can."""

    def __init__(self, log: LogWriter, tee: tuple[int | None, int | None] = (None, None)) -> None:
        self.log, self._ends, self._sources = log, [], {}
        for stream, copy_to in zip(("stdout", "stderr"), tee):
            read_end, write_end = os.pipe()
            self._ends.append(write_end)
            self._sources[read_end] = (stream, copy_to)
        self._thread = threading.Thread(target=self._relay, daemon=True)

    @property
    def fds(self) -> tuple[int, int]:
        """The write ends, to give the container as its fds 1 and 2."""
        return self._ends[0], self._ends[1]

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._ends:  # the container's copies are gone with it: EOF for the thread
            os.close(fd)
        self._thread.join(_RELAY_JOIN)

    def _relay(self) -> None:
        open_fds = list(self._sources)  # stdout's first
        while open_fds:
            ready = set(select.select(open_fds, [], [])[0])
            for fd in [f for f in open_fds if f in ready]:
                data = os.read(fd, 65536)
                if not data:
                    open_fds.remove(fd)
                    os.close(fd)
                    continue
                stream, copy_to = self._sources[fd]
                if copy_to is not None:
                    write_all(copy_to, data)
                self.log.write(stream, data)


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (or the reader is gone)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return
