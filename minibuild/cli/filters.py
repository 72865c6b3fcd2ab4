"""`--filter` of `images` and `ps`, by docker's rules: `key=value` pairs; several values of one
key match any of them, different keys must all match.

images: `dangling=true|false`, `reference=PATTERN` (`*` within a path component, as Go's
path.Match), `label=KEY` or `label=KEY=VALUE`, `before=IMAGE`, `since=IMAGE`.
ps: `status=created|running|exited|dead`, `name=TEXT` (part of the name), `ancestor=IMAGE`
(created from that image or one built on it), `label=...` (containers carry no labels yet),
`id=PREFIX`, `exited=CODE`.
"""

from __future__ import annotations

import re
from typing import Callable

import click

IMAGE_KEYS = ("dangling", "reference", "label", "before", "since")
CONTAINER_KEYS = ("status", "name", "ancestor", "label", "id", "exited")
STATES = ("created", "running", "exited", "dead", "paused", "restarting", "removing")


def parse(texts: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, list[str]]:
    """`key=value` options by key; a bad one is a usage error naming the keys there are."""
    found: dict[str, list[str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key not in keys:
            raise click.BadParameter(f"{text!r}: want KEY=VALUE with KEY one of "
                                     f"{', '.join(keys)}", param_hint="--filter")
        found.setdefault(key, []).append(value)
    return found


def _boolean(value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise click.BadParameter(f"dangling={value}: want true or false", param_hint="--filter")


def reference_matcher(pattern: str) -> Callable[[str], bool]:
    """Go's path.Match for a reference pattern, tried on `name:tag` and on `name` alone."""
    regex = re.compile("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                               for c in pattern) + r"\Z")
    return lambda name: bool(regex.match(name) or regex.match(name.rsplit(":", 1)[0]))


def label_matches(labels: dict[str, str], wanted: str) -> bool:
    """`KEY` (present) or `KEY=VALUE` (equal)."""
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def image_rows(entries, filters: dict[str, list[str]], created_of: Callable[[str], str | None],
               *, show_all: bool) -> list[tuple[object, str | None]]:
    """(entry, tag or None) for each `images` line the filters and -a let through."""
    intermediate = _intermediate(entries)
    keep = []
    for entry in entries:
        if entry.digest in intermediate and not show_all and "dangling" not in filters:
            continue
        if not _image_passes(entry, filters, created_of):
            continue
        names = entry.names
        if "reference" in filters:
            matchers = [reference_matcher(p) for p in filters["reference"]]
            names = tuple(n for n in names if any(m(n) for m in matchers))
            if not names:
                continue
        keep += [(entry, name) for name in names or (None,)]
    return keep


def _image_passes(entry, filters: dict[str, list[str]], created_of) -> bool:
    if "dangling" in filters and not any(_boolean(v) == (not entry.names)
                                         for v in filters["dangling"]):
        return False
    if "label" in filters and not all(label_matches(entry.labels, v) for v in filters["label"]):
        return False
    created = entry.created or ""
    if any(created >= (created_of(v) or "") for v in filters.get("before", ())):
        return False
    if any(created <= (created_of(v) or "") for v in filters.get("since", ())):
        return False
    return True


def _intermediate(entries) -> set[str]:
    """Untagged images another image is built on (its layers a proper prefix of that one's):
    docker's intermediate images, which `images` shows only with -a."""
    chains = [e.diff_ids for e in entries]
    return {e.digest for e in entries if not e.names and any(
        len(other) > len(e.diff_ids) and other[:len(e.diff_ids)] == e.diff_ids
        for other in chains)}


def container_passes(container, state: str, filters: dict[str, list[str]],
                     ancestors: Callable[[str], Callable[[object], bool]]) -> bool:
    """Whether a container passes the `ps` filters (`ancestors(text)` tests one image)."""
    checks = {
        "status": lambda v: _state(v) == state,
        "name": lambda v: v.lstrip("/") in container.name,
        "id": lambda v: container.id.startswith(v),
        "exited": lambda v: state == "exited" and str(container.exit_code) == v,
        "label": lambda v: False,
        "ancestor": lambda v: ancestors(v)(container),
    }
    return all(any(checks[key](v) for v in values) for key, values in filters.items())


def _state(value: str) -> str:
    if value not in STATES:
        raise click.BadParameter(f"status={value}: want one of {', '.join(STATES)}",
                                 param_hint="--filter")
    return value
