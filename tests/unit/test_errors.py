"""The error types: where they happened (`at`), and how they print."""

from __future__ import annotations

from minibuild.dockerfile.instructions import Location
from minibuild.dockerfile.parser import parse
from minibuild.errors import BuildError, BuildfileError, MinibuildError


def test_at_a_location_takes_file_line_and_column():
    exc = BuildfileError.at(Location("Buildfile", 3, 5), "bad")
    assert (exc.file, exc.line, exc.column, exc.message) == ("Buildfile", 3, 5, "bad")
    assert str(exc) == "Buildfile:3:5: bad"


def test_at_an_instruction_takes_its_location():
    run = parse("FROM a\n  RUN false\n", "app/Buildfile").instructions[1]
    exc = BuildfileError.at(run, "nope")
    assert str(exc) == "app/Buildfile:2:3: nope"


def test_at_keeps_the_subclass_and_its_extra_fields():
    exc = BuildError.at(Location("B", 1), "failed", exit_status=7, hint="try again")
    assert isinstance(exc, BuildError) and exc.exit_status == 7 and exc.hint == "try again"
    assert str(exc) == "B:1:1: failed"


def test_location_prints_what_is_known():
    assert MinibuildError("x").location() == ""
    assert MinibuildError("x", file="f").location() == "f"
    assert MinibuildError("x", file="f", line=2).location() == "f:2"
    assert str(MinibuildError("x", file="f", line=2, step="[1/2] RUN")) == "[1/2] RUN: f:2: x"


def test_a_range_of_lines_is_printed_as_first_last():
    assert MinibuildError("x", file="f", line=2, column=1, end_line=4).location() == "f:2-4"
    assert MinibuildError("x", file="f", line=2, column=3, end_line=2).location() == "f:2:3"


def test_locate_gives_an_unplaced_error_the_instruction_range():
    run = parse("FROM a\nRUN a \\\n  b\n", "B").instructions[1]
    exc = BuildError("exit 1")
    exc.locate(run)
    assert str(exc) == "B:2-3: exit 1" and exc.end_line == 3
