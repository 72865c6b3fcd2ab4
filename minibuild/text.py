"""Human-readable sizes, ages and shortened text, as docker prints and reads them (imports nothing
of ours)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$", re.IGNORECASE)


def human_size(size: int) -> str:
    """Docker-style sizes in powers of 1000: 0B, 812B, 1.5kB, 52.4MB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """`1024`, `64k`, `1.5g`, `512MiB`... as bytes (binary multiples, like Docker); ValueError."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r} (want bytes, or a number with k, m, g, t or p)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgtp".index(unit.lower() or "b"))


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from a config, or None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_age(text: str | None, now: datetime | None = None) -> str:
    """`5 minutes ago` for an RFC 3339 timestamp; `N/A` when unknown."""
    moment = parse_time(text)
    if moment is None:
        return "N/A"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = int(((now or datetime.now(timezone.utc)) - moment).total_seconds())
    if seconds < 1:
        return "Less than a second ago"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                       (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "N/A"


def shorten(text: str, width: int) -> str:
    """`text` on one line (runs of blanks and newlines become one space), cut to `width`
    characters with `…` as the last one when it is longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
