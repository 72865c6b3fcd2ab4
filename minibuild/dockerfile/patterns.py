"""The patterns of `${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}` (the Dockerfile reference's
"Environment replacement"), as BuildKit's lex.go matches them.

A pattern is a shell glob without bracket expressions: `?` is one character, `*` any number;
`\\*`, `\\?` and `\\\\` are literal, and `\\}` / `\\/` are the characters the `${...}` syntax needs
escaped. It becomes a regular expression; the shortest match from the end is found by
reversing both the value and the pattern (regular expressions only search forwards).
"""

from __future__ import annotations

import re


class PatternError(ValueError):
    """A pattern that cannot be read (an escape of anything but `* ? \\ } /`)."""


def to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """The regular expression of a glob: `*` is `.*` when greedy, else `.*?`."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue  # the escape belongs to the ${...} syntax, not to the pattern
            if nxt not in ("*", "?", "\\"):
                raise PatternError(f"invalid pattern ({pattern}) in substitution: "
                                   f"invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def trim(value: str, op: str, word: str) -> str:
    """`${v#p}`/`${v##p}` (op `#`) and `${v%p}`/`${v%%p}` (op `%`): `word` is what follows the
    operator, a doubled operator (longest match) included."""
    greedy = word.startswith(op)
    if greedy:
        word = word[1:]
    if op == "#":
        return _trim_prefix(value, word, greedy)
    return _trim_prefix(value[::-1], _reverse(word), greedy)[::-1]


def replace(value: str, pattern: str, replacement: str, every: bool) -> str:
    """`${v/p/r}` (the first, longest match) or `${v//p/r}` (every match); `r` is literal."""
    regex = to_regex(pattern, greedy=True, anchored=False)
    return regex.sub(lambda _: replacement, value, count=0 if every else 1)


def _trim_prefix(value: str, pattern: str, greedy: bool) -> str:
    match = to_regex(pattern, greedy=greedy, anchored=True).match(value)
    return value[match.end():] if match else value


def _reverse(pattern: str) -> str:
    """A pattern read backwards, each escape kept before what it escapes (`a\\*c` -> `c\\*a`)."""
    tokens, i = [], 0
    while i < len(pattern):
        size = 2 if pattern[i] == "\\" and i + 1 < len(pattern) else 1
        tokens.append(pattern[i:i + size])
        i += size
    return "".join(reversed(tokens))
