"""The parse cache: a typed JSON round trip of every instruction, hits that never import lark,
misses on any edit, corrupt entries ignored, errors never cached, bounded, gone after prune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from minibuild.dockerfile import instructions as ins
from minibuild.build import parsecache
from minibuild.dockerfile import parser, syntax
from minibuild.errors import BuildfileError

REPO = Path(__file__).resolve().parents[3]
RICH = REPO / "tests" / "testdata" / "parser" / "rich.Buildfile"
SMALL = "FROM base:1.0\nCOPY a /a\nRUN echo hi\nENV X=1\nCMD [\"sh\"]\n"


def entries(root: Path) -> list[Path]:
    return sorted(parsecache.cache_dir(root).glob("*.json"))


def python(code: str) -> str:
    """Run code in a fresh interpreter on this checkout; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, check=True)
    return proc.stdout


def kinds(instructions) -> set[type]:
    """The instruction classes used, ONBUILD triggers included."""
    found = set()
    for instr in instructions:
        found.add(type(instr))
        if isinstance(instr, ins.Onbuild):
            found.add(type(instr.trigger))
    return found


# -- encoding ----------------------------------------------------------------------------------


def test_every_instruction_kind_round_trips_through_json():
    buildfile = parser.parse_file(RICH)
    assert kinds(buildfile.instructions) == set(typing.get_args(ins.Instruction))
    for instr in buildfile.instructions:
        back = parsecache.decode(json.loads(json.dumps(parsecache.encode(instr))))
        assert back == instr and type(back) is type(instr)
    assert parsecache.decode(json.loads(json.dumps(parsecache.encode(buildfile)))) == buildfile


def test_the_round_trip_keeps_nested_values_typed():
    run = parser.parse("FROM a\nRUN cat <<-'A' <<B\n\tx\n\tA\ny\nB\n").instructions[1]
    back = parsecache.decode(parsecache.encode(run))
    assert isinstance(back.location, ins.Location) and isinstance(back.command, ins.ShellForm)
    assert isinstance(back.heredocs, tuple) and all(isinstance(h, ins.Heredoc) for h in back.heredocs)
    assert [(h.delimiter, h.content, h.expand, h.chomp_tabs) for h in back.heredocs] == \
        [("A", "x\n", False, True), ("B", "y\n", True, False)]
    env = parsecache.decode(parsecache.encode(parser.parse("FROM a\nENV a=1 b=2\n").instructions[1]))
    assert env.pairs == (("a", "1"), ("b", "2")) and isinstance(env.pairs[0], tuple)
    arg = parsecache.decode(parsecache.encode(parser.parse("FROM a\nARG x\n").instructions[1]))
    assert arg.pairs == (("x", None),)


def test_an_add_stays_an_add():
    add = parser.parse("FROM a\nADD x /y\n").instructions[1]
    assert type(parsecache.decode(parsecache.encode(add))) is ins.Add


@pytest.mark.parametrize("value", [[1], {"a": 1}, 1.5, object(), parser.Buildfile])
def test_encode_refuses_what_decode_could_not_rebuild(value):
    with pytest.raises(TypeError):
        parsecache.encode(value)


@pytest.mark.parametrize("data", [
    {"@": "Popen", "args": []},
    {"@": "Location", "file": "f", "line": 1},
    {"@": "Location", "file": "f", "line": 1, "column": 1, "extra": 2},
    {"file": "f"},
])
def test_decode_refuses_what_encode_never_writes(data):
    with pytest.raises(ValueError):
        parsecache.decode(data)


# -- the cache ---------------------------------------------------------------------------------


def test_importing_the_parser_does_not_import_lark():
    out = python("import sys, minibuild.dockerfile.parser, minibuild.build.parsecache; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'regex')))")
    assert out.strip() == "[]"


def test_a_hit_gives_equal_instructions_without_importing_lark(tmp_path):
    fresh = parsecache.parse_file(tmp_path, RICH)
    assert fresh == parser.parse_file(RICH) and len(entries(tmp_path)) == 1
    out = python(
        "import json, sys\n"
        "from minibuild.build import parsecache\n"
        f"bf = parsecache.parse_file({str(tmp_path)!r}, {str(RICH)!r})\n"
        "print(json.dumps(parsecache.encode(bf)))\n"
        "print('lark' in sys.modules)\n")
    encoded, imported = out.splitlines()
    assert parsecache.decode(json.loads(encoded)) == fresh
    assert imported == "False"


def test_a_miss_parses_and_imports_lark(tmp_path):
    # The other side of the check above: a miss really parses (so the subprocess check can fail).
    out = python(
        "import sys\n"
        "from minibuild.build import parsecache\n"
        f"parsecache.parse({str(tmp_path)!r}, {SMALL!r}, 'Buildfile')\n"
        "print('lark' in sys.modules)\n")
    assert out.strip() == "True" and len(entries(tmp_path)) == 1


def test_an_edited_buildfile_misses(tmp_path):
    path = tmp_path / "Buildfile"
    path.write_text(SMALL)
    first = parsecache.parse_file(tmp_path / "store", path)
    path.write_text(SMALL.replace("echo hi", "echo bye"))
    second = parsecache.parse_file(tmp_path / "store", path)
    assert second.instructions[2].command == ins.ShellForm("echo bye")
    assert first.instructions[2].command == ins.ShellForm("echo hi")
    assert len(entries(tmp_path / "store")) == 2


def test_the_file_name_is_part_of_the_key(tmp_path):
    a = parsecache.parse(tmp_path, SMALL, "a/Buildfile")
    b = parsecache.parse(tmp_path, SMALL, "b/Buildfile")
    assert a.instructions[1].location.file == "a/Buildfile"
    assert b.instructions[1].location.file == "b/Buildfile" and b.file == "b/Buildfile"
    assert len(entries(tmp_path)) == 2


def test_the_parser_code_is_part_of_the_key(tmp_path, monkeypatch):
    before = parsecache.key(SMALL, "Buildfile")
    monkeypatch.setattr(parsecache, "_code_digest", None)
    monkeypatch.setattr(syntax, "grammar_text", lambda: "start: other\n")
    assert parsecache.key(SMALL, "Buildfile") != before


def test_every_frontend_module_a_parse_runs_is_part_of_the_key(tmp_path, monkeypatch):
    files = {Path(name).name for name in parser.code_files()}
    assert {"parser.py", "prepass.py", "syntax.py", "heredoc.py", "transformer.py",
            "instructions.py", "shell.py"} <= files
    before, original = parsecache.key(SMALL, "Buildfile"), parser.code_files()
    edited = tmp_path / "transformer.py"  # the transformer with one more comment line
    edited.write_text(Path(parser.transformer.__file__).read_text() + "# edited\n")
    monkeypatch.setattr(parsecache, "_code_digest", None)
    monkeypatch.setattr(parser, "code_files",
                        lambda: tuple(str(edited) if Path(f).name == "transformer.py" else f
                                      for f in original))
    assert parsecache.key(SMALL, "Buildfile") != before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff not json")


def _altered(path: Path) -> None:
    # Valid JSON, checksum no longer matching: a changed byte must not become a changed build.
    path.write_text(path.read_text().replace("echo hi", "echo HI"))


def _wrong_shape(path: Path) -> None:
    path.write_text(json.dumps([1, 2, 3]))


def _unreadable(path: Path) -> None:
    path.unlink()
    path.mkdir()  # root reads through any mode bits: a dir is what it cannot read as a file


@pytest.mark.parametrize("damage", [_truncate, _garbage, _altered, _wrong_shape, _unreadable])
def test_a_damaged_entry_is_ignored_and_replaced(tmp_path, damage):
    good = parsecache.parse(tmp_path, SMALL)
    [entry] = entries(tmp_path)
    damage(entry)
    assert parsecache.parse(tmp_path, SMALL) == good
    if entry.is_file():
        assert parsecache._load(entry) == good  # written again, whole


@pytest.mark.parametrize("text, where", [
    ("FROM a\nRUN ok\nCOPY only-one\n", (3, 1)),
    ("FROM a\n\n  FORM b\n", (3, 3)),
])
def test_a_parse_error_is_not_cached_and_keeps_its_location(tmp_path, text, where):
    path = tmp_path / "Buildfile"
    path.write_text(text)
    for _ in range(2):
        with pytest.raises(BuildfileError) as info:
            parsecache.parse_file(tmp_path / "store", path)
        assert (info.value.file, info.value.line, info.value.column) == (str(path), *where)
    assert entries(tmp_path / "store") == []


def test_a_missing_buildfile_is_the_parsers_error(tmp_path):
    with pytest.raises(BuildfileError) as info:
        parsecache.parse_file(tmp_path, tmp_path / "nope")
    assert info.value.file == str(tmp_path / "nope")


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(parsecache, "KEEP", 3)
    texts = [f"FROM a\nRUN echo {n}\n" for n in range(3)]
    for n, text in enumerate(texts):
        parsecache.parse(tmp_path, text)
        entry = parsecache.cache_dir(tmp_path) / f"{parsecache.key(text, 'Buildfile')}.json"
        os.utime(entry, ns=(10**9 * (n + 1), 10**9 * (n + 1)))  # distinct ages, oldest first
    parsecache.parse(tmp_path, texts[0])  # a hit: now the most recent
    parsecache.parse(tmp_path, "FROM a\nRUN echo 3\n")
    names = {p.stem for p in entries(tmp_path)}
    assert len(names) == 3
    assert parsecache.key(texts[1], "Buildfile") not in names  # the least recently used went
    assert parsecache.key(texts[0], "Buildfile") in names


def test_prune_cache_empties_it(tmp_path):
    root = tmp_path / "store"
    parsecache.parse(root, SMALL)
    (parsecache.cache_dir(root) / ".stray.tmp").write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "minibuild", "--root", str(root), "prune", "--cache"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    assert list(parsecache.cache_dir(root).iterdir()) == []


def test_forget_all_counts_entries(tmp_path):
    assert parsecache.forget_all(tmp_path) == 0
    parsecache.parse(tmp_path, SMALL)
    parsecache.parse(tmp_path, SMALL + "ENV Y=2\n")
    assert parsecache.forget_all(tmp_path) == 2 and entries(tmp_path) == []


def test_a_store_that_cannot_take_an_entry_still_parses(tmp_path):
    (tmp_path / "cache").write_text("not a dir")
    assert parsecache.parse(tmp_path, SMALL) == parser.parse(SMALL)
