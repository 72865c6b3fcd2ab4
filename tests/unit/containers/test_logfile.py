"""The json-file log: records, times, tails and the -t printer."""

from __future__ import annotations

import json

import pytest

from minibuild.containers.logfile import LogWriter, Printer, Record, parse_moment, parse_time, \
    split_records, tail, timestamp

NS = 1_000_000_000


def test_timestamp_is_rfc3339nano_with_nine_digits():
    assert timestamp(1_796_278_321 * NS + 123) == "2026-12-03T06:12:01.000000123Z"
    assert parse_time("2026-12-03T06:12:01.000000123Z") == 1_796_278_321 * NS + 123


def test_parse_time_takes_offsets_and_no_fraction():
    assert parse_time("2026-12-03T07:12:01+01:00") == 1_796_278_321 * NS
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_parse_moment_takes_unix_times_and_durations():
    now = 1000 * NS
    assert parse_moment("10.5", now) == 10_500_000_000
    assert parse_moment("1m30s", now) == now - 90 * NS
    assert parse_moment("1970-01-01T00:00:01Z", now) == NS


def test_writer_cuts_lines_and_keeps_bytes(tmp_path):
    with LogWriter(tmp_path / "log") as log:
        log.write("stdout", b"one\ntwo")
        log.write("stderr", b"\xff\n")
    lines = (tmp_path / "log").read_bytes().splitlines()
    assert [json.loads(line)["stream"] for line in lines] == ["stdout", "stdout", "stderr"]
    records, rest = split_records((tmp_path / "log").read_bytes(), raw_tail=True)
    assert rest == b"" and [r.data for r in records] == [b"one\n", b"two", b"\xff\n"]
    assert all(r.time_ns for r in records)


def test_an_older_raw_log_still_reads():
    records, rest = split_records(b"plain\n{not json\nlast", raw_tail=False)
    assert [r.data for r in records] == [b"plain\n", b"{not json\n"] and rest == b"last"
    assert split_records(b"last", raw_tail=True)[0] == [Record(b"last")]


def test_printer_stamps_only_line_starts():
    records = [Record(b"a", "stdout", NS), Record(b"b\n", "stdout", 2 * NS),
               Record(b"c\n", "stdout", 3 * NS)]
    out = Printer(True).render(records).decode()
    assert out == "1970-01-01T00:00:01.000000000Z ab\n1970-01-01T00:00:03.000000000Z c\n"
    assert Printer(False).render(records) == b"ab\nc\n"


def test_tail_counts_lines_not_pieces():
    records = [Record(b"1\n"), Record(b"2"), Record(b"2\n"), Record(b"3\n")]
    assert tail(records, 2) == records[1:]
    assert tail(records, 0) == [] and tail(records, 9) == records
