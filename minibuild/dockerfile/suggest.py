"""Suggestions ("did you mean ...?"): the known name nearest a mistyped one (BuildKit's suggest).

BuildKit offers the option at the smallest Levenshtein distance below 3, and nothing when the
name is one of the options (the error is then about something else). Used for unknown flags,
stage names (`--target`, `FROM`, `COPY --from`) and HEALTHCHECK options.
"""

from __future__ import annotations

from collections.abc import Iterable

_MAX_DISTANCE = 3  # BuildKit's (and HCL's): only closer names are offered


def distance(a: str, b: str) -> int:
    """The Levenshtein distance (insertions, deletions, substitutions) between two strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def closest(value: str, options: Iterable[str]) -> str | None:
    """The option nearest to `value` (the first of equals), or None when none is near enough or
    `value` is itself an option."""
    best, best_distance = None, _MAX_DISTANCE
    for option in options:
        if option == value:
            return None
        found = distance(value, option)
        if found < best_distance:
            best, best_distance = option, found
    return best


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """` (did you mean X?)` for the closest option, else an empty string: a message's tail."""
    found = closest(value, options)
    return f" (did you mean {found}?)" if found is not None else ""


def unknown_flag(keyword: str, name: str, known: Iterable[str]) -> str:
    """The message for `--name` that `keyword` does not know, with the nearest flag it does."""
    found = closest(name, known)
    hint = f" (did you mean --{found}?)" if found is not None else ""
    return f"unknown flag --{name} for {keyword}{hint}"
