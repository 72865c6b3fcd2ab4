"""Heredocs (heredoc.py): which words are markers, and reading their bodies after the line."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import heredoc, syntax
from minibuild.dockerfile.instructions import Heredoc
from minibuild.dockerfile.prepass import Reader, split_lines
from minibuild.errors import BuildfileError


def collect(text: str, escape: str = "\\") -> tuple[Heredoc, ...]:
    """The heredocs of the first instruction of `text`."""
    reader = Reader(split_lines(text), escape, "B")
    line = reader.next_line()
    return heredoc.collect(syntax.recognise(line), line, reader)


@pytest.mark.parametrize("word, found", [
    ("<<EOF", ("EOF", False, True)),
    ("<<-EOF", ("EOF", True, True)),
    ("<<'EOF'", ("EOF", False, False)),  # a quoted delimiter: the body is not expanded
    ('2<<"E O"', None),  # blanks in the delimiter
    ("<<''", None),
    ("<<'open", None),  # an unmatched quote
    ("cat", None),
])
def test_marker(word, found):
    assert heredoc.marker(word, "\\") == found


def test_marker_unquotes_with_the_backtick_escape():
    assert heredoc.marker("<<E`OF", "`") == ("EOF", False, False)


def test_run_bodies_in_marker_order():
    found = collect("RUN cat <<A <<-'B'\na $x\nA\n\tb\n\tB\n")
    assert found == (Heredoc("A", "a $x\n", True, False), Heredoc("B", "b\n", False, True))


def test_copy_and_onbuild_open_heredocs_and_exec_form_does_not():
    assert collect("COPY <<F /dst\nx\nF\n") == (Heredoc("F", "x\n", True, False),)
    assert collect("ONBUILD ADD <<F /dst\nx\nF\n") == (Heredoc("F", "x\n", True, False),)
    assert collect('RUN ["cat", "<<EOF"]\n') == ()
    assert collect("ENV a=<<EOF\n") == ()


def test_an_unterminated_heredoc_is_located_at_its_instruction():
    with pytest.raises(BuildfileError) as info:
        collect("\nRUN cat <<EOF\nbody\n")
    assert str(info.value) == ('B:2:1: unterminated heredoc: no line with only "EOF" '
                               "before the end of the file")
