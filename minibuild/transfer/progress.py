"""What a pull or push reports while it moves blobs (the CLI draws bars; tests stay quiet)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What a pull or push reports: one bar per blob."""

    def begin(self, key: str, label: str, total: int) -> None:
        """A blob transfer starts."""

    def advance(self, key: str, amount: int) -> None:
        """Bytes moved."""

    def end(self, key: str, note: str) -> None:
        """The blob is done (note: 'done', 'exists', 'mounted', ...)."""


class QuietProgress:
    """Reports nothing."""

    def begin(self, key: str, label: str, total: int) -> None:
        """Ignored."""

    def advance(self, key: str, amount: int) -> None:
        """Ignored."""

    def end(self, key: str, note: str) -> None:
        """Ignored."""
