"""Plain text the commands print: `build`'s step headers, step ends and result trailer, and
the columns of docker-style tables.

One place for their format, shared by the plain reporter, the CLI and the build memo's replay
(which runs before anything heavy is imported, so this module imports nothing).
"""

from __future__ import annotations

from collections.abc import Iterable


def one_line(text: str) -> str:
    """An instruction's text on one line (continuations and runs of blanks become one space)."""
    return " ".join(text.split())


def step_header(stage: str, number: int, total: int, text: str) -> str:
    """`[stage-0 2/5] COPY a /a`: a step starts."""
    return f"[{stage} {number}/{total}] {one_line(text)}"


def step_done(seconds: float, note: str = "") -> str:
    """`  done in 0.12s NOTE`: a step ended (the note says CACHED, or what the layer holds)."""
    return f"  done in {seconds:.2f}s{f' {note}' if note else ''}"


def trailer(image_id: str, tags: Iterable[str], warnings: Iterable[str] = ()) -> list[str]:
    """The lines after the last step: warnings, `Built <image ID>`, one `Tagged <name>` per tag."""
    return [*(f"warning: {w}" for w in warnings), f"Built {image_id}", *(f"Tagged {t}" for t in tags)]


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by three spaces, as docker prints tables (no final newline)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in [header, *rows])


# -- TTY progress (BuildKit's layout), shared by the live screen and the build memo's replay ---

def progress_header(seconds: float, done: int, total: int, state: str = "") -> str:
    """`[+] Building 12.3s (5/9) FINISHED`: the first line of TTY progress."""
    return f"[+] Building {seconds:.1f}s ({done}/{total}){f' {state}' if state else ''}"


def progress_row(name: str, seconds: float, width: int, status: str = "") -> str:
    """` => NAME STATUS    1.2s`: one step on one line, its time at the right edge; cut to fit
    `width`, the name before the status (a terminal too narrow for both drops the status, one
    too narrow for the time gets the name only)."""
    timer = f" {seconds:.1f}s"
    room = width - 4 - len(timer)
    if room < 8:
        return _cut(f" => {name}", width)
    if status and room - len(status) - 1 >= 20:  # the name is cut first: the status says more
        text = f"{_cut(name, room - len(status) - 1)} {status}"
    else:
        text = _cut(name, room)
    return f" => {text.ljust(room)}{timer}"


def output_row(line: str, width: int) -> str:
    """` => => # LINE`: a line of a step's output under its header, cut to fit `width`."""
    return _cut(f" => => # {line}", width)


def _cut(text: str, width: int) -> str:
    """`text`, or its start and `…` when longer than `width`."""
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def cached_frame(steps: Iterable, width: int, color: bool) -> list[str]:
    """The last TTY frame of a build answered from its memo: every step done in 0.0s, those
    that made a layer CACHED (`steps` hold stage, number, total, text and cached); rows blue
    as the live screen draws finished steps, unless `color` is off."""
    steps = list(steps)
    rows = [progress_header(0.0, len(steps), len(steps), "FINISHED")]
    for step in steps:
        name = step_header(step.stage, step.number, step.total, step.text)
        row = progress_row(f"CACHED {name}" if step.cached else name, 0.0, width)
        rows.append(f"\x1b[34m{row}\x1b[0m" if color else row)
    return rows
