"""What `history`, `layers` and plain build progress print, from rows made by hand."""

from __future__ import annotations

import io

from minibuild.cli.render import PlainReporter, QuietReporter, history_table, \
    layer_entries, layers_table, layers_waste
from minibuild.cli.views import HistoryRow
from minibuild.layer.snapshot import LayerSummary

BASE_ID = "sha256:" + "a" * 64
TOP_ID = "sha256:" + "b" * 64
LONG = "RUN apt-get update && apt-get install -y build-essential curl git && rm -rf /var/lib/apt"


def rows() -> list[HistoryRow]:
    """A base layer whose 1 MB file the top layer deletes, and an ENV between them."""
    base = HistoryRow(None, "COPY . /", None, False, BASE_ID, "sha256:" + "1" * 64, 1_000_100,
                      500_000, 1_000_000, (("app/big", 1_000_000, "deleted", 1),), 0)
    env = HistoryRow(None, "ENV A=1", "set by hand", True, None, None, 0, 0, 0, (), None)
    top = HistoryRow(None, LONG, None, False, TOP_ID, "sha256:" + "2" * 64, 0, 90, 0, (), 1)
    return [base, env, top]


def clean_rows() -> list[HistoryRow]:
    return [HistoryRow(None, "COPY . /", None, False, BASE_ID, "sha256:" + "1" * 64, 2000, 900, 0,
                       (), 0)]


def test_history_lists_newest_first_with_short_ids_and_commands():
    lines = history_table(rows(), no_trunc=False).splitlines()
    assert lines[0].split() == ["LAYER", "CREATED", "CREATED", "BY", "SIZE", "BLOB", "COMMENT"]
    assert lines[1].startswith("b" * 12 + "   N/A       " + LONG[:44] + "…   0B     90B")
    assert lines[2].startswith("<empty>") and "set by hand" in lines[2]
    assert " - " in lines[2]  # an empty layer has no blob
    assert lines[3].startswith("a" * 12) and "1MB hidden by later layers" in lines[3]
    assert "hides 1MB of earlier layers" in lines[1]


def test_history_columns_line_up():
    lines = history_table(rows(), no_trunc=False).splitlines()[:4]
    created = [line.index("N/A") for line in lines[1:]]
    assert len(set(created)) == 1 and lines[0].index("CREATED") == created[0]


def test_history_without_truncation_shows_everything():
    text = history_table(rows(), no_trunc=True)
    assert TOP_ID in text and LONG in text and "…" not in text.split("\n\n")[0]


def test_history_explains_the_wasted_space_and_the_fix():
    text = history_table(rows(), no_trunc=False)
    assert "Image content: 1MB; 1MB (100.0%) is hidden by later layers" in text
    assert f"/app/big  added by `COPY . /`, deleted by `{LONG[:39]}…`" in text
    assert "delete in the same RUN that created the files" in text
    assert text.endswith("\n")


def test_history_of_an_image_without_waste_says_so():
    text = history_table(clean_rows(), no_trunc=False)
    assert text.endswith("\nImage content: 2kB in 1 layer; nothing hidden by later layers.\n")


def test_history_lists_ten_hidden_paths_at_most():
    hidden = tuple((f"f{i:02}", 100 + i, "overwritten", 1) for i in range(11))
    base = HistoryRow(None, "COPY a /", None, False, BASE_ID, None, 2000, 1, 1155, hidden, 0)
    top = HistoryRow(None, "COPY b /", None, False, TOP_ID, None, 2000, 1, 0, (), 1)
    text = history_table([base, top], no_trunc=False)
    assert "/f10  added by" in text and "/f00  added by" not in text  # the largest first
    assert "  ... and 1 more paths" in text
    ten = HistoryRow(None, "COPY a /", None, False, BASE_ID, None, 2000, 1, 1045, hidden[1:], 0)
    assert "more paths" not in history_table([ten, top], no_trunc=False)


def test_layers_table_shows_only_sizes_and_a_short_command():
    lines = layers_table([r for r in rows() if r.layer is not None]).splitlines()
    assert lines[0].split() == ["#", "LAYER", "SIZE", "BLOB", "WASTED", "CREATED", "BY"]
    assert lines[1].split() == ["0", "a" * 12, "1MB", "500kB", "1MB", "COPY", ".", "/"]
    assert lines[2].endswith("   " + LONG[:49] + "…")


def test_layer_entries_mark_whiteouts_opaque_dirs_and_hidden_files():
    summary = LayerSummary((("etc/conf", 12), ("app/big", 1_000_000)), ("bin/old",), ("app",),
                           1_000_012)
    assert layer_entries(summary, rows()[0]) == [  # by path, whatever the kind
        "  opaque  /app/",
        "     1MB  /app/big  (hidden by layer 1)",
        "whiteout  /bin/old",
        "     12B  /etc/conf",
    ]


def test_layers_waste_names_who_added_and_who_hid():
    layered = [r for r in rows() if r.layer is not None]
    assert layers_waste(layered) == (
        "\n1MB in 2 layers; 1MB (100.0%) is hidden by later layers but still stored:\n"
        "       1MB  /app/big  added by layer 0, deleted by layer 1")
    assert layers_waste(clean_rows()) == "\n2kB in 1 layer; nothing hidden by later layers."


def test_plain_progress_keeps_step_lines_on_lines_of_their_own():
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.step(1, 2, "stage-0", "RUN echo \\\n    hi")
    reporter.output(b"partial")
    reporter.phase("snapshot")
    reporter.done(0.5, "CACHED")
    reporter.step(2, 2, "stage-0", "COPY a /a")
    reporter.output("caf\u00e9\n".encode()[:-2] + b"\n")  # a cut UTF-8 sequence is replaced
    reporter.done(1.0, "")
    assert out.getvalue() == ("[stage-0 1/2] RUN echo \\ hi\npartial\n  done in 0.50s CACHED\n"
                              "[stage-0 2/2] COPY a /a\ncaf\ufffd\n  done in 1.00s\n")


def test_plain_progress_prints_a_redrawn_line_once_in_its_final_state():
    """As BuildKit's plain output: no line per `\\r` update (wget, curl, pip progress)."""
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.step(1, 1, "stage-0", "RUN wget x")
    reporter.output(b"Connecting...\n")
    for percent in (10, 60, 100):
        reporter.output(b"\rsaving %d%%" % percent)
        assert out.getvalue().count("saving") == 0
    reporter.output(b"\nsaved\n0% [Working]\r            \rDone")
    reporter.done(0.5, "")
    assert out.getvalue() == ("[stage-0 1/1] RUN wget x\nConnecting...\nsaving 100%\nsaved\n"
                              "Done\n  done in 0.50s\n")


def test_plain_progress_ends_an_open_line_before_the_error_of_a_failed_build():
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.step(1, 1, "stage-0", "RUN false")
    reporter.output(b"no newline")
    reporter.close(failed=True)
    assert out.getvalue().endswith("no newline\n")


def test_quiet_progress_prints_nothing(capsys):
    reporter = QuietReporter()
    reporter.step(1, 1, "s", "RUN x")
    reporter.output(b"data")
    reporter.phase("p")
    reporter.done(1.0, "note")
    assert capsys.readouterr() == ("", "")
