"""The parse cache: a parsed Buildfile kept as JSON in the store, so that a build whose Buildfile
did not change neither parses it again nor imports lark (~30 ms of a cached build).

An entry is `ROOT/cache/parse/<key>.json`. The key hashes all that decides the parse: the text,
the file name the locations show, and the parser itself (the grammar, the source of every
frontend module a parse runs, `parser.code_files()`, and of this module, lark's `__init__.py`,
which carries its version, and Python's version). An edited Buildfile or parser is another key; nothing is ever
invalidated in place. Only successful parses are stored: a mistake is parsed (and reported)
every time. An entry carries the sha256 of its payload; one that is unreadable, truncated,
altered or of another format is ignored and written again. Writes are temp + rename; only the
KEEP most recently used entries stay; `prune --cache` removes them all.

The encoding is a generic, typed round trip of the frozen dataclasses of instructions.py (and
parser.Buildfile): `{"@": class name, field: value...}`, tuples as arrays (the dataclasses hold
no lists, so an array always decodes to a tuple), str, int, bool and None as themselves;
`decode(encode(x)) == x`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from minibuild.dockerfile import instructions as ins
from minibuild.store import entries
from minibuild.dockerfile import parser, syntax
from minibuild.dockerfile.parser import Buildfile
from minibuild.fs.files import write_atomic
from minibuild.store.paths import StorePaths

FORMAT = 1
KEEP = 200  # entries per store; the least recently used go first
_TAG = "@"
_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (*(v for v in vars(ins).values() if isinstance(v, type)), Buildfile)
    if dataclasses.is_dataclass(cls)
}
_code_digest: str | None = None


def cache_dir(root: Path) -> Path:
    """The parse cache of a store."""
    return StorePaths.at(root).parse_cache


# -- encoding ----------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A parsed value as JSON-ready data; TypeError for anything `decode` could not rebuild."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, tuple):
        return [encode(item) for item in value]
    cls = type(value)
    if _CLASSES.get(cls.__name__) is cls:
        out = {_TAG: cls.__name__}
        for field in dataclasses.fields(value):
            out[field.name] = encode(getattr(value, field.name))
        return out
    raise TypeError(f"the parse cache cannot encode a {cls.__name__}")


def decode(data: Any) -> Any:
    """The value `encode` was given; ValueError for data it could not have made."""
    if data is None or isinstance(data, (str, bool, int)):
        return data
    if isinstance(data, list):
        return tuple(decode(item) for item in data)
    if not isinstance(data, dict) or data.get(_TAG) not in _CLASSES:
        raise ValueError(f"not an encoded value: {str(data)[:60]!r}")
    cls = _CLASSES[data[_TAG]]
    names = {field.name for field in dataclasses.fields(cls)}
    if data.keys() - {_TAG} != names:
        raise ValueError(f"fields of {cls.__name__} do not match")  # written by another version
    return cls(**{name: decode(data[name]) for name in names})


def _canonical(data: Any) -> bytes:
    """One byte string per value: what an entry's checksum is taken of."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


# -- the cache ---------------------------------------------------------------------------------


def _code() -> str:
    """A digest of the parser's code and grammar (once per process: ~0.3 ms)."""
    global _code_digest
    if _code_digest is None:
        import importlib.util

        digest = hashlib.sha256(f"{FORMAT}\n{sys.version}\n".encode())
        for name in (*parser.code_files(), __file__):
            digest.update(Path(name).read_bytes())
        digest.update(syntax.grammar_text().encode())
        spec = importlib.util.find_spec("lark")  # its version, without importing it
        if spec is not None and spec.origin:
            digest.update(Path(spec.origin).read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest


def key(text: str, file: str) -> str:
    """The entry name of one parse: hashes the text, the file name and the parser's code."""
    material = json.dumps([_code(), file, text])
    return hashlib.sha256(material.encode()).hexdigest()


def parse(root: Path, text: str, file: str = "Buildfile") -> Buildfile:
    """`parser.parse(text, file)`, answered from the cache when it holds this parse."""
    path = cache_dir(root) / f"{key(text, file)}.json"
    found = _load(path)
    if found is not None:
        return found
    buildfile = parser.parse(text, file)  # a BuildfileError leaves the cache as it was
    _store(path, buildfile)
    return buildfile


def parse_file(root: Path, path: str | os.PathLike) -> Buildfile:
    """`parser.parse_file(path)`, answered from the cache when it holds this parse."""
    return parse(root, parser.read_text(path), os.fspath(path))


def _load(path: Path) -> Buildfile | None:
    """The entry's Buildfile; None when it is missing or not to be trusted."""
    try:
        data = json.loads(path.read_bytes())
        payload = data["buildfile"]
        if data["format"] != FORMAT or data["key"] != path.stem \
                or data["sha256"] != hashlib.sha256(_canonical(payload)).hexdigest():
            return None
        buildfile = decode(payload)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if not isinstance(buildfile, Buildfile):
        return None
    try:
        os.utime(path)  # recently used: the last to be trimmed
    except OSError:
        pass  # a read-only store still answers
    return buildfile


def _store(path: Path, buildfile: Buildfile) -> None:
    """Write an entry; a store that cannot take it (read-only, full) only loses the speed-up."""
    payload = encode(buildfile)
    data = _canonical({"format": FORMAT, "key": path.stem, "buildfile": payload,
                       "sha256": hashlib.sha256(_canonical(payload)).hexdigest()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=False)
        entries.trim(path.parent, KEEP)
    except OSError:
        pass


def forget_all(root: Path) -> int:
    """Delete every entry of a store's parse cache (and stray temp files); how many entries."""
    return entries.empty(cache_dir(root))
