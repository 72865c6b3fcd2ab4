"""A step's output read as a terminal shows it: `\\r` redraws, `\\n` ends, escapes applied."""

from __future__ import annotations

from minibuild.cli.transcript import Transcript


def test_carriage_returns_redraw_the_current_line_instead_of_gluing_updates():
    transcript = Transcript()
    for percent in (10, 50, 100):
        assert transcript.feed(f"\rDownloading {percent}%".encode()) == []
    assert transcript.current == "Downloading 100%" and transcript.redrawn
    assert transcript.feed(b"\ndone\n") == ["Downloading 100%", "done"]
    assert not transcript.redrawn and transcript.count == 2


def test_a_shorter_redraw_overwrites_the_start_as_a_terminal_does():
    transcript = Transcript()
    transcript.feed(b"100% [=====]\r 50%")
    assert transcript.current == " 50% [=====]"


def test_crlf_ends_a_line_and_blanks_that_cleared_a_line_are_dropped():
    transcript = Transcript()
    assert transcript.feed(b"one\r\n0% [Working]\r            \rDone\n") == ["one", "Done"]


def test_erase_to_end_of_line_and_colours_are_applied_not_printed():
    transcript = Transcript()
    assert transcript.feed(b"\x1b[1;32mok\x1b[0m 12345\r\x1b[Kfine\n") == ["fine"]


def test_only_the_last_lines_are_kept_and_a_cut_utf8_sequence_waits_for_its_end():
    transcript = Transcript(keep=2)
    transcript.feed(b"a\nb\nc\ncaf\xc3")
    assert list(transcript.lines) == ["b", "c"] and transcript.current == "caf"
    transcript.feed(b"\xa9")
    assert transcript.tail == ["b", "c", "caf\u00e9"]
    transcript.feed(b"\xc3")
    transcript.flush()
    assert transcript.current == "caf\u00e9\ufffd"


def test_tabs_are_kept_as_the_step_wrote_them():
    """Plain logs get the step's bytes: `cat /proc/sys/net/ipv4/ping_group_range` prints a tab
    (test_network caught tabs expanded to spaces)."""
    assert Transcript().feed(b"0\t2147483647\n") == ["0\t2147483647"]
