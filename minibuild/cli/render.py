"""What the commands show a person: build progress (rich on a terminal, plain lines otherwise)
and the tables of `history`, `images` and `layers`. Read-only data comes in, text goes out."""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

from minibuild.cli.lines import one_line as _one_line, step_done, step_header, table
from minibuild.text import human_age, human_size, shorten
from minibuild.cli.views import HistoryRow

if TYPE_CHECKING:  # snapshot pulls in the compressors: not for a table
    from minibuild.layer.snapshot import LayerSummary


class PlainReporter:
    """Progress as plain lines, for logs and CI (also what `--progress plain` picks)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._midline = False

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts."""
        self._line(step_header(stage, number, total, text))

    def output(self, data: bytes) -> None:
        """Output of the running step, passed through as it comes."""
        text = data.decode("utf-8", "replace")
        self.stream.write(text)
        self.stream.flush()
        self._midline = not text.endswith("\n")

    def phase(self, text: str) -> None:
        """A phase inside a step (snapshot...)."""

    def done(self, seconds: float, note: str) -> None:
        """The step ended."""
        self._line(step_done(seconds, note))

    def _line(self, text: str) -> None:
        if self._midline:
            self.stream.write("\n")
            self._midline = False
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


class RichReporter:
    """Progress on a terminal: a header per step, live output, a spinner with elapsed time."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self._status = None
        self._started = 0.0
        self._label = ""
        self._pending = ""

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step starts: print its header and start the spinner."""
        self._stop()
        label = _escape(f"[{stage} {number}/{total}]")
        self.console.print(f"[bold blue]{label}[/] {_escape(_one_line(text))}")
        self._label = _one_line(text)[:60]
        self._started = time.monotonic()
        self._status = self.console.status(_Elapsed(self))
        self._status.start()

    def output(self, data: bytes) -> None:
        """Output of the running step, printed above the spinner, line by line."""
        self._pending += data.decode("utf-8", "replace")
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.console.print(f"[dim]│[/] {_escape(line)}")

    def phase(self, text: str) -> None:
        """A phase inside a step, shown in the spinner."""
        self._flush()
        self._label = f"{text}…"

    def done(self, seconds: float, note: str) -> None:
        """The step ended."""
        self._flush()
        self._stop()
        extra = f" [dim]{_escape(note)}[/]" if note else ""
        self.console.print(f"  [green]✓[/] {seconds:.2f}s{extra}")

    def _flush(self) -> None:
        if self._pending:
            self.console.print(f"[dim]│[/] {_escape(self._pending)}")
            self._pending = ""

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        """Stop the spinner (also after a failure)."""
        self._flush()
        self._stop()


class _Elapsed:
    """The spinner's text, re-rendered on every refresh: the step's label and seconds so far."""

    def __init__(self, reporter: RichReporter) -> None:
        self.reporter = reporter

    def __rich__(self):
        from rich.text import Text

        elapsed = time.monotonic() - self.reporter._started
        return Text(f"{self.reporter._label} ({elapsed:.0f}s)", style="dim")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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
