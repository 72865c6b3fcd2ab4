"""The functions of gotemplate: Go's builtins (`print printf println len index slice eq ne lt le
gt ge and or not`) and docker's (`json join split lower upper title pad truncate`), with Go's
`%v` way of printing a value."""

from __future__ import annotations

import json as _json
import re
from typing import Any, Callable

from minibuild.errors import MinibuildError


class TemplateError(MinibuildError):
    """A --format template that does not parse or cannot run on the data."""

    exit_code = 2


class _Missing:
    """A key a map does not hold: prints as Go prints it."""

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


def show(value: Any) -> str:
    """A value as Go's `%v` prints it: `[a b]`, `map[k:v]`, `true`, `<nil>`."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{show(k)}:{show(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_float(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def truth(value: Any) -> bool:
    """Go's truth for if/with/and/or/not: false, 0, nil and empty things are false."""
    return value is not MISSING and bool(value)


def go_json(value: Any) -> str:
    """encoding/json's compact output (HTML characters escaped, as Go does)."""
    text = _json.dumps(None if value is MISSING else value, separators=(",", ":"),
                       ensure_ascii=False, default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value: Any) -> Any:
    """Objects (list rows) as their JSON form."""
    if hasattr(value, "to_json"):
        return value.to_json()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _print(*values: Any) -> str:
    """Go's fmt.Sprint: a space between operands when neither is a string."""
    out = ""
    for i, value in enumerate(values):
        if i and not isinstance(value, str) and not isinstance(values[i - 1], str):
            out += " "
        out += show(value)
    return out


def _println(*values: Any) -> str:
    return " ".join(show(v) for v in values) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def _printf(fmt: str, *values: Any) -> str:
    """fmt.Sprintf for the verbs people use: %s %v %d %q %t %x %f %e %g and widths."""
    args = list(values)

    def one(match: re.Match) -> str:
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if not args:
            return f"%!{verb}(MISSING)"
        value = args.pop(0)
        if verb in "vst":
            text = show(value)
        elif verb == "q":
            text = _json.dumps(show(value), ensure_ascii=False)
        elif verb in "dxXfeEgG" and isinstance(value, (int, float)) and not isinstance(value, bool):
            spec = f"{'.' + precision if precision and verb not in 'dxX' else ''}{verb}"
            return format(value, f"{flags.replace('-', '<')}{width or ''}{spec}")
        else:
            return f"%!{verb}({show(value)})"
        if precision:
            text = text[:int(precision)]
        align = "<" if "-" in flags else ">"
        return format(text, f"{align}{width}") if width else text

    return _VERB.sub(one, fmt)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, "")  # a missing key: docker's string maps give ""
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        elif value is None or value is MISSING:
            return ""  # a nil map's zero value, as docker's string maps give
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _len(value: Any) -> int:
    if value is None or value is MISSING:
        return 0
    if isinstance(value, (list, tuple, dict, str)):
        return len(value)
    raise TemplateError(f"len of type {type(value).__name__}")


def _slice(value: Any, *bounds: int) -> Any:
    return value[slice(*bounds)] if bounds else value


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def check(a: Any, b: Any) -> bool:
        if type(a) is not type(b) and not all(isinstance(x, (int, float)) for x in (a, b)):
            raise TemplateError("incompatible types for comparison")
        return op(a, b)
    return check


def _eq(a: Any, *others: Any) -> bool:
    return any(show(a) == show(b) if type(a) is not type(b) else a == b for b in others)


def _and(*values: Any) -> Any:
    for value in values:
        if not truth(value):
            return value
    return values[-1]


def _or(*values: Any) -> Any:
    for value in values:
        if truth(value):
            return value
    return values[-1]


def _join(values: Any, sep: str) -> str:
    return sep.join(show(v) for v in (values or ()))


def _title(text: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), show(text))


def _truncate(text: Any, length: int) -> str:
    return show(text)[:length]


def _pad(text: Any, before: int, after: int) -> str:
    return " " * before + show(text) + " " * after


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "print": _print, "printf": _printf, "println": _println, "len": _len, "index": _index,
    "slice": _slice, "not": lambda v: not truth(v), "and": _and, "or": _or, "eq": _eq,
    "ne": lambda a, b: not _eq(a, b), "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b), "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b), "json": go_json, "join": _join,
    "split": lambda text, sep: show(text).split(sep), "lower": lambda t: show(t).lower(),
    "upper": lambda t: show(t).upper(), "title": _title, "truncate": _truncate, "pad": _pad,
}
