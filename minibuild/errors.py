"""The errors a user may see. Only the CLI turns them into a message and an exit code."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar


class Located(Protocol):
    """A place in a Buildfile (`instructions.Location` is one)."""

    file: str
    line: int
    column: int


class HasLocation(Protocol):
    """Something that starts at a place in a Buildfile (every instruction does)."""

    location: Located


_E = TypeVar("_E", bound="MinibuildError")


class MinibuildError(Exception):
    """Base of every expected failure; carries where it happened, printed as one line."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        step: str | None = None,
        hint: str | None = None,
        end_line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.end_line = end_line  # an instruction over several lines: its last one
        self.step = step
        self.hint = hint

    @classmethod
    def at(cls: type[_E], where: Located | HasLocation, message: str, **extra: Any) -> _E:
        """This error at an instruction or a `Location` (file, line and column taken from it)."""
        place = getattr(where, "location", where)  # an instruction carries its Location
        return cls(message, file=place.file, line=place.line, column=place.column,
                   end_line=getattr(place, "end_line", None), **extra)

    def locate(self, where: Located | HasLocation) -> None:
        """Give an error raised without a place (below the frontend) that of an instruction."""
        place = getattr(where, "location", where)
        self.file, self.line, self.column = place.file, place.line, place.column
        self.end_line = getattr(place, "end_line", None)

    def location(self) -> str:
        """`file:line:col`, or `file:first-last` for an instruction over several lines (as
        much of it as is known), or an empty string."""
        if self.file is None:
            return ""
        parts = [self.file]
        if self.line is not None and self.end_line is not None and self.end_line > self.line:
            parts.append(f"{self.line}-{self.end_line}")
        elif self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        if self.step:
            text = f"{self.step}: {text}"
        return text


class BuildfileError(MinibuildError):
    """The Buildfile is not valid: syntax, unknown instruction, bad arguments."""

    exit_code = 1


class BuildError(MinibuildError):
    """A build step failed (a RUN exited non-zero, a COPY source is missing...)."""

    def __init__(self, message: str, *, exit_status: int | None = None, **where) -> None:
        super().__init__(message, **where)
        self.exit_status = exit_status


class ReferenceError_(MinibuildError):
    """An image reference or digest string does not parse."""

    exit_code = 2


class ImageNotFound(MinibuildError):
    """No image in the store answers to a reference."""


class StoreError(MinibuildError):
    """The store is unusable: corrupt blob, unwritable root, disk full."""


class LayerError(MinibuildError):
    """A layer's content cannot be represented or is unsafe to apply."""


class SandboxError(MinibuildError):
    """The sandbox could not be set up: no root, no overlayfs, mount failed."""


class Interrupted(MinibuildError):
    """The user or the system asked us to stop (SIGINT/SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.exit_code = 128 + signum
