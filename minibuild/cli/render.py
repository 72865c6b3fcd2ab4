"""What the commands show a person: plain build progress (screen.py draws it on a terminal)
and the tables of `history`, `images` and `layers`. Read-only data comes in, text goes out."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

from minibuild.cli.lines import step_done, step_header, table
from minibuild.cli.transcript import Transcript
from minibuild.text import human_age, human_size, shorten
from minibuild.cli.views import HistoryRow

if TYPE_CHECKING:  # snapshot pulls in the compressors: not for a table
    from minibuild.layer.snapshot import LayerSummary


class PlainReporter:
    """Progress as plain lines, for logs and CI (also what `--progress plain` picks).

    Output passes through as it comes, except a line redrawn with `\\r` (a download's
    progress): as BuildKit's plain output, such a line is not printed once per update; its
    final state is printed when it ends."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._transcript = Transcript(keep=0)
        self._shown = ""  # what of the current line is on screen

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts."""
        self._line(step_header(stage, number, total, text))

    def output(self, data: bytes) -> None:
        """Output of the running step."""
        self._show(self._transcript.feed(data))
        self.stream.flush()

    def phase(self, text: str) -> None:
        """A phase inside a step (snapshot...)."""

    def done(self, seconds: float, note: str) -> None:
        """The step ended."""
        self._line(step_done(seconds, note))

    def close(self, failed: bool = False, canceled: bool = False) -> None:
        """The build ended: end a line the step left open (before the error message)."""
        self._end_output()
        self.stream.flush()

    def _show(self, finished: list[str]) -> None:
        for line in finished:
            self._write_line(line)
            self.stream.write("\n")
            self._shown = ""
        if not self._transcript.redrawn:
            self._write_line(self._transcript.current)

    def _write_line(self, text: str) -> None:
        """Bring the current line on screen to `text` (what is already there is not repeated)."""
        if text.startswith(self._shown):
            self.stream.write(text[len(self._shown):])
        elif not self._shown.startswith(text):
            self.stream.write(f"\n{text}" if self._shown else text)
        self._shown = text

    def _end_output(self) -> None:
        self._show(self._transcript.flush())
        current = self._transcript.current
        if current.strip():
            self._write_line(current.rstrip() if self._transcript.redrawn else current)
        if self._shown:
            self.stream.write("\n")
        self._transcript, self._shown = Transcript(keep=0), ""

    def _line(self, text: str) -> None:
        self._end_output()
        self.stream.write(text + "\n")
        self.stream.flush()


class QuietReporter:
    """No progress at all (`build -q`)."""

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """Ignored."""

    def output(self, data: bytes) -> None:
        """Ignored."""

    def phase(self, text: str) -> None:
        """Ignored."""

    def done(self, seconds: float, note: str) -> None:
        """Ignored."""


# -- history -------------------------------------------------------------------------------

def history_table(rows: list[HistoryRow], *, no_trunc: bool) -> str:
    """Docker's `history` columns, newest first, then the wasted-space summary."""
    header = ("LAYER", "CREATED", "CREATED BY", "SIZE", "BLOB", "COMMENT")
    body = []
    for row in reversed(rows):
        layer = row.diff_id if no_trunc else (row.diff_id or "")[7:19]
        created_by = row.created_by if no_trunc else shorten(row.created_by, 45)
        blob = human_size(row.blob_size) if not row.empty_layer else "-"
        body.append((layer or "<empty>", human_age(row.created), created_by, human_size(row.size),
                     blob, _comment(row, rows)))
    return _columns(header, body) + _waste_summary(rows)


def _comment(row: HistoryRow, rows: list[HistoryRow]) -> str:
    parts = [row.comment] if row.comment else []
    if row.wasted:
        parts.append(f"{human_size(row.wasted)} hidden by later layers")
    hides = sum(s for r in rows for _, s, _, by in r.hidden if by == row.layer and row.layer is not None)
    if hides:
        parts.append(f"hides {human_size(hides)} of earlier layers")
    return "; ".join(parts)


def _waste_summary(rows: list[HistoryRow]) -> str:
    total = sum(r.size for r in rows)
    wasted = sum(r.wasted for r in rows)
    if not wasted:
        count = sum(1 for r in rows if not r.empty_layer)
        return f"\nImage content: {human_size(total)} in {_layers(count)}; nothing hidden by later layers.\n"
    by_layer = {r.layer: r for r in rows if r.layer is not None}
    lines = [f"\nImage content: {human_size(total)}; {human_size(wasted)} ({100 * wasted / total:.1f}%) "
             "is hidden by later layers but still stored and shipped (wasted space):"]
    hidden = sorted(((s, p, h, r, by_layer[by]) for r in rows for p, s, h, by in r.hidden),
                    key=lambda item: (-item[0], item[1]))
    for size, path, how, added, hider in hidden[:10]:
        lines.append(f"  {human_size(size):>8}  /{path}  added by `{shorten(added.created_by, 40)}`, "
                     f"{how} by `{shorten(hider.created_by, 40)}`")
    if len(hidden) > 10:
        lines.append(f"  ... and {len(hidden) - 10} more paths")
    lines.append("  A later `RUN rm` cannot shrink an earlier layer: delete in the same RUN that "
                 "created the files, or copy only what you need from a build stage.")
    return "\n".join(lines) + "\n"


def _layers(count: int) -> str:
    """`1 layer`, `3 layers`."""
    return f"{count} layer{'' if count == 1 else 's'}"


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by three spaces, as docker prints tables; a final newline."""
    return table(header, rows) + "\n"


def layers_table(rows: list[HistoryRow]) -> str:
    """`layers`: # LAYER SIZE BLOB WASTED CREATED BY, one row per layer (no final newline)."""
    body = [(str(r.layer), (r.diff_id or "")[7:19], human_size(r.size), human_size(r.blob_size),
             human_size(r.wasted), shorten(r.created_by, 50)) for r in rows]
    return table(("#", "LAYER", "SIZE", "BLOB", "WASTED", "CREATED BY"), body)


def layer_entries(summary: LayerSummary, row: HistoryRow) -> list[str]:
    """`layers --files`: one line per entry, whiteouts and opaque dirs marked, hidden files flagged."""
    hidden = {p: by for p, _, _, by in row.hidden}
    lines = [f"{human_size(size):>8}  /{path}"
             + (f"  (hidden by layer {hidden[path]})" if path in hidden else "")
             for path, size in summary.files]
    lines += [f"{'whiteout':>8}  /{path}" for path in summary.whiteouts]
    lines += [f"{'opaque':>8}  /{path}/" for path in summary.opaques]
    return sorted(lines, key=lambda line: line.split("  /", 1)[1])


def layers_waste(rows: list[HistoryRow]) -> str:
    """`layers`: the wasted-bytes summary, each hidden path with who added it and who hid it."""
    hidden = sorted(((size, path, how, r.layer, by) for r in rows
                     for path, size, how, by in r.hidden), key=lambda h: (-h[0], h[1]))
    total = sum(r.size for r in rows)
    if not hidden:
        return f"\n{human_size(total)} in {_layers(len(rows))}; nothing hidden by later layers."
    wasted = sum(h[0] for h in hidden)
    lines = [f"\n{human_size(total)} in {_layers(len(rows))}; {human_size(wasted)} "
             f"({100 * wasted / total:.1f}%) is hidden by later layers but still stored:"]
    lines += [f"  {human_size(size):>8}  /{path}  added by layer {added}, {how} by layer {by}"
              for size, path, how, added, by in hidden]
    return "\n".join(lines)
