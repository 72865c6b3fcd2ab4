"""`--chmod` values of COPY/ADD: octal (`755`) or chmod(1) symbolic (`u+x,g-w`, `+x`, `g=u`).

BuildKit reads them as its frontend does (convert_copy.go): a value that parses as an octal
number must lie in 0..07777, anything else goes through dchapes-mode, a port of BSD setmode(3)
with a umask of 0 (so `+x` means `a+x`). A symbolic mode is applied to each copied entry's own
mode (the source's), `X` adding execute only to dirs and to files already executable by someone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from minibuild.errors import BuildError

_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o0007, "a": 0o6777}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111}
_SHIFT = {"u": 6, "g": 3, "o": 0}
_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")


@dataclass(frozen=True)
class Action:
    """One `who op perms` step, e.g. `go` `-` `w`; who "" means all (the umask is 0)."""

    who: str
    op: str
    perms: str


@dataclass(frozen=True)
class FileMode:
    """A parsed --chmod: `octal` for numbers, else the symbolic actions in order."""

    text: str
    octal: int | None
    actions: tuple[Action, ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        """The permission bits an entry whose own bits are `mode` gets."""
        if self.octal is not None:
            return self.octal
        new = mode & 0o7777
        for action in self.actions:
            new = _apply(action, new, mode, is_dir)
        return new

    @property
    def dir_mode(self) -> int:
        """The mode of the dirs the copy creates on the way (BuildKit: the octal mode, else 0755)."""
        return 0o755 if self.octal is None else self.octal


def parse_mode(text: str) -> FileMode:
    """Parse a --chmod value; raise BuildError with BuildKit's wording when it is invalid."""
    if text[:1].isdigit():
        if not re.fullmatch(r"[0-7]+", text) or int(text, 8) > 0o7777:
            raise BuildError(f"invalid chmod parameter: '{text}'. it should be octal string "
                             "and between 0 and 07777")
        return FileMode(text, int(text, 8))
    actions: list[Action] = []
    for clause in text.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise BuildError(f"invalid chmod parameter: '{text}': not an octal or symbolic "
                             "mode (like 755, u+x,g-w or u=rwX,go=rX)")
        who = match.group(1)
        actions.extend(Action(who, op, perms) for op, perms in _ACTION.findall(match.group(2)))
    return FileMode(text, None, tuple(actions))


def _apply(action: Action, new: int, original: int, is_dir: bool) -> int:
    """One action on the mode built so far (`X` looks at the entry's original mode)."""
    mask = 0
    for ch in action.who or "a":
        mask |= _WHO[ch]
    if action.perms in _SHIFT:  # copy another class's bits: `g=u`
        value = (new >> _SHIFT[action.perms]) & 0o7
        bits = ((value << 6) | (value << 3) | value) & mask & 0o777
    else:
        bits, mask = _bits(action, mask, original, is_dir)
    if action.op == "+":
        return new | bits
    if action.op == "-":
        return new & ~bits
    return (new & ~mask) | bits


def _bits(action: Action, mask: int, original: int, is_dir: bool) -> tuple[int, int]:
    """The bits an action's letters name, within who's mask (set-id and sticky as setmode(3):
    ignored when only `o` is named)."""
    bits = 0
    special = action.who == "" or mask & ~0o007 != 0
    for ch in action.perms:
        if ch in _PERM:
            bits |= _PERM[ch]
        elif ch == "X" and (action.op == "-" or is_dir or original & 0o111):
            bits |= 0o111
        elif ch == "s" and special:
            bits |= 0o6000
        elif ch == "t" and special:
            bits |= 0o1000
            mask |= 0o1000
    return bits & mask, mask
