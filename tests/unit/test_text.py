"""Sizes, ages and shortened text as docker prints them (minibuild.text)."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from minibuild import text
from minibuild.text import human_age, human_size, parse_time, shorten

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("size, expected", [
    (0, "0B"), (812, "812B"), (999, "999B"), (1000, "1kB"), (1500, "1.5kB"),
    (52_400_000, "52.4MB"), (3_000_000_000, "3GB"), (7 * 10**12, "7TB"),
])
def test_human_size_counts_in_powers_of_1000(size, expected):
    assert human_size(size) == expected


def test_parse_time_reads_rfc3339_and_gives_none_for_the_rest():
    assert parse_time("2024-05-01T12:00:00Z") == NOW
    assert parse_time("2024-05-01T12:00:00.123456Z").microsecond == 123456
    assert parse_time(None) is None
    assert parse_time("") is None
    assert parse_time("yesterday") is None


@pytest.mark.parametrize("delta, expected", [
    ({"seconds": 0}, "Less than a second ago"),
    ({"seconds": 1}, "1 second ago"),
    ({"seconds": 59}, "59 seconds ago"),
    ({"minutes": 5}, "5 minutes ago"),
    ({"hours": 1}, "1 hour ago"),
    ({"days": 2}, "2 days ago"),
    ({"days": 14}, "2 weeks ago"),
    ({"days": 61}, "2 months ago"),
    ({"days": 800}, "2 years ago"),
])
def test_human_age_names_the_largest_whole_unit(delta, expected):
    assert human_age(ago(**delta), now=NOW) == expected


def test_human_age_of_unknown_or_future_times():
    assert human_age(None, now=NOW) == "N/A"
    assert human_age("not a time", now=NOW) == "N/A"
    assert human_age("2024-05-01T13:00:00Z", now=NOW) == "Less than a second ago"


def test_human_age_takes_a_time_without_zone_as_utc():
    assert human_age("2024-05-01T11:00:00", now=NOW) == "1 hour ago"


def test_shorten_keeps_what_fits():
    assert shorten("RUN make", 8) == "RUN make"
    assert shorten("", 5) == ""


def test_shorten_cuts_with_an_ellipsis_as_the_last_character():
    out = shorten("RUN apt-get update && apt-get install -y curl", 20)
    assert out == "RUN apt-get update …"
    assert len(out) == 20


def test_shorten_puts_the_text_on_one_line_first():
    assert shorten("RUN a \\\n    &&\tb", 60) == "RUN a \\ && b"
    assert shorten("  a\n\nb  ", 3) == "a b"
    assert shorten("x" * 5 + "\n" + "y" * 5, 6) == "xxxxx…"


def test_text_imports_nothing_of_minibuild():
    """Every package may import text.py, so it must import none of them (no cycle possible)."""
    tree = ast.parse(Path(text.__file__).read_text())
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names]
    modules += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith("minibuild")]
