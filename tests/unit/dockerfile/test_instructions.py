"""Typed instructions (instructions.py): locations, keywords, COPY paths, heredoc markers, flags."""

from __future__ import annotations

import dataclasses

import pytest

from minibuild.dockerfile import instructions as ins

AT = ins.Location("Buildfile", 4, 2)


def copy(*sources: str, dest: str = "/d", heredocs=(), flags=()) -> ins.Copy:
    return ins.Copy(AT, tuple(flags), "COPY ...", sources=sources, dest=dest, heredocs=heredocs)


def test_location_prints_file_line_column_and_defaults_to_column_one():
    assert str(AT) == "Buildfile:4:2"
    assert str(ins.Location("f", 9)) == "f:9:1"


def test_keyword_is_the_class_name_in_upper_case():
    assert copy("a").keyword == "COPY"
    assert ins.Add(AT, (), "ADD a /d", sources=("a",), dest="/d").keyword == "ADD"
    assert ins.StopSignal(AT, (), "STOPSIGNAL 9", signal="9").keyword == "STOPSIGNAL"


def test_instructions_are_frozen_values():
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy("a").dest = "/other"  # type: ignore[misc]
    assert copy("a") == copy("a") and hash(copy("a")) == hash(copy("a"))


def test_copy_paths_leave_heredoc_markers_out():
    body = ins.Heredoc("EOF", "hi\n", expand=True, chomp_tabs=False)
    assert copy("a", "<<EOF", "b", heredocs=(body,)).paths == ("a", "b")
    assert copy("a", "<<EOF").paths == ("a", "<<EOF")  # no bodies: the words are paths


@pytest.mark.parametrize("word, marker", [
    ("<<EOF", True), ("<<-EOF", True), ('<<"EOF"', True), ("3<<'X'", True),
    ("<<", False), ("a<<EOF", False), ("<<<EOF", False), ("EOF", False),
])
def test_heredoc_marker_words(word, marker):
    assert ins.is_heredoc_marker(word) is marker


def test_flag_values_in_order_quotes_removed_bare_flag_empty():
    instr = copy("a", flags=("--from=build", "--link", '--chown="a b"', "--from='x'y"))
    assert ins.flag_values(instr, "from") == ("build", "xy")
    assert ins.flag_value(instr, "from") == "xy"  # the last one wins
    assert ins.flag_value(instr, "link") == ""
    assert ins.flag_value(instr, "chown") == "a b"
    assert ins.flag_value(instr, "chmod") is None and ins.flag_values(instr, "chmod") == ()


def test_a_flag_name_must_match_whole():
    assert ins.flag_value(copy("a", flags=("--from-x=1",)), "from") is None
