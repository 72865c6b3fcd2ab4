"""The pre-pass (prepass.py): physical lines, directives, logical lines and their map back to the
file, heredoc bodies. No grammar involved."""

from __future__ import annotations

import pytest

from minibuild.dockerfile.instructions import Location
from minibuild.dockerfile.prepass import LogicalLine, Reader, directives, split_lines
from minibuild.errors import BuildfileError


def reader(text: str, escape: str = "\\") -> Reader:
    return Reader(split_lines(text), escape, "Buildfile")


def logical(text: str, escape: str = "\\") -> list[str]:
    """Every logical line's text."""
    found, r = [], reader(text, escape)
    while (line := r.next_line()) is not None:
        found.append(line.text)
    return found


def test_split_lines_drops_a_bom_and_reads_crlf_as_lf():
    assert split_lines("\ufeffFROM a\r\nRUN b\r\n") == ["FROM a", "RUN b", ""]
    assert split_lines("a\rb") == ["a\rb"]  # a lone CR is not a line break


def test_directives_default_to_backslash_and_no_syntax():
    assert directives(["FROM a"], "Buildfile") == ("\\", None)


def test_directives_are_read_case_insensitively_until_the_first_other_line():
    lines = ["# Syntax = docker/dockerfile:1", "#ESCAPE=`", "#check=skip=all", "FROM a",
             "# escape=\\"]
    assert directives(lines, "B") == ("`", "docker/dockerfile:1")
    assert directives(["# note", "# escape=`"], "B") == ("\\", None)  # not in the leading run


def test_a_repeated_directive_is_refused_at_its_line():
    with pytest.raises(BuildfileError) as info:
        directives(["# escape=`", "# escape=`"], "B")
    assert str(info.value) == "B:2:1: only one escape parser directive can be used"


def test_an_escape_other_than_backslash_or_backtick_is_refused():
    with pytest.raises(BuildfileError, match="^B:1:1: invalid escape token 'x'"):
        directives(["# escape=x"], "B")


def test_comment_and_blank_lines_are_skipped():
    assert logical("# c\n\n  \nFROM a\n   # indented comment\nRUN b\n") == ["FROM a", "RUN b"]


def test_continuations_join_and_drop_comment_and_blank_lines_inside():
    assert logical("RUN a \\\n# c\n\n  b \\  \n c\n") == ["RUN a   b  c"]


def test_backtick_escape_continues_and_backslash_does_not():
    assert logical("RUN a `\n b\nRUN c \\\nRUN d\n", escape="`") == ["RUN a  b", "RUN c \\", "RUN d"]


def test_a_continuation_at_the_end_of_the_file_ends_the_line():
    assert logical("RUN a \\") == ["RUN a"]


def test_where_maps_offsets_back_to_file_line_and_column():
    line = reader("   RUN a \\\n  b \\\nc\n").next_line()
    assert line.text == "RUN a   b c"
    assert line.where(0) == (1, 4)  # RUN, after the three blanks
    assert line.where(line.text.index("b")) == (2, 3)
    assert line.where(line.text.index("c")) == (3, 1)
    assert line.location() == Location("Buildfile", 1, 4)


def test_a_logical_line_error_is_located():
    line = LogicalLine("RUN x", ((0, 5, 3),), "app/B", "\\")
    assert str(line.error("bad", 4)) == "app/B:5:7: bad"
    assert str(line.error("bad")) == "app/B:5:3: bad"


def test_heredoc_bodies_are_read_on_from_the_reader():
    r = reader("RUN cat <<EOF\nhello\n\tworld\nEOF\nRUN next\n")
    assert r.next_line().text == "RUN cat <<EOF"
    assert r.heredoc("EOF", chomp=False) == "hello\n\tworld\n"
    assert r.next_line().text == "RUN next"


def test_a_chomped_heredoc_strips_leading_tabs_of_body_and_delimiter():
    r = reader("RUN x\n\thello\n\t\tEOF\n")
    r.next_line()
    assert r.heredoc("EOF", chomp=True) == "hello\n"


def test_an_unterminated_heredoc_is_none():
    r = reader("RUN x\nbody\n")
    r.next_line()
    assert r.heredoc("EOF", chomp=False) is None


def test_an_escaped_escape_at_the_end_is_not_a_continuation():
    # BuildKit's parser/testfiles/trailing-backslash (docker/for-win#5254): `\\` ends the value
    text = ("ENV B another\\\\path\nENV C trailing\\\\backslash\\\\\n"
            "ENV D This should not be appended to C\n"
            "ENV E hello\\\n\\\nworld\nENV F hello\\\n \\\nworld\nENV G hello \\\n\\\nworld\n")
    assert logical(text) == ["ENV B another\\\\path", "ENV C trailing\\\\backslash\\\\",
                             "ENV D This should not be appended to C", "ENV E helloworld",
                             "ENV F hello world", "ENV G hello world"]
    assert logical("RUN a``\nRUN b `\nc\n", escape="`") == ["RUN a``", "RUN b c"]
