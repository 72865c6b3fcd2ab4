"""`minibuild parse`: the JSON of the parsed instructions (cli/dump.py), golden files and shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from minibuild.cli import app as cli
from minibuild.cli.dump import dump
from minibuild.dockerfile.parser import parse

DATA = Path(__file__).resolve().parents[2] / "testdata" / "parser"


def one(text: str) -> dict:
    """The dump of the instruction after a leading `FROM scratch`."""
    return dump(parse("FROM scratch\n" + text))[1]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.Buildfile")), ids=lambda p: p.stem)
def test_the_command_prints_the_golden_json(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["minibuild", "parse", "-f", str(path)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    expected = json.loads(path.with_suffix(".json").read_text())
    assert info.value.code == 0
    assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"


def test_from_keeps_the_words_as_written_after_the_flags():
    entry = dump(parse("FROM --platform=linux/amd64 base:1 as build\n"))[0]
    assert entry == {"instruction": "FROM", "line": 1, "flags": ["--platform=linux/amd64"],
                     "form": None, "args": ["base:1", "as", "build"]}


def test_commands_name_their_form():
    assert (one('CMD ["a", "b"]')["form"], one('CMD ["a", "b"]')["args"]) == ("exec", ["a", "b"])
    assert (one("RUN echo hi")["form"], one("RUN echo hi")["args"]) == ("shell", "echo hi")
    assert one('SHELL ["/bin/bash", "-c"]')["args"] == ["/bin/bash", "-c"]
    assert one("HEALTHCHECK NONE")["args"] is None


def test_pairs_are_unquoted_and_a_bare_arg_is_null():
    assert one('ENV a="x y" b=z')["pairs"] == [["a", "x y"], ["b", "z"]]
    assert one("ARG name other=1")["pairs"] == [["name", None], ["other", "1"]]


def test_copy_lists_sources_then_dest_and_json_form_is_exec():
    assert one("COPY a b /dst/")["args"] == ["a", "b", "/dst/"]
    entry = one('COPY ["a b", "/dst/"]')
    assert (entry["form"], entry["args"]) == ("exec", ["a b", "/dst/"])


def test_heredocs_and_onbuild_nest():
    entry = one("RUN cat <<EOF\nhello\nEOF")
    assert entry["heredocs"] == [{"delimiter": "EOF", "content": "hello\n"}]
    trigger = one("ONBUILD RUN make")["args"]
    assert (trigger["instruction"], trigger["args"]) == ("RUN", "make")


def test_single_value_instructions():
    assert one("WORKDIR /app")["args"] == "/app"
    assert one("EXPOSE 80 53/udp")["args"] == ["80", "53/udp"]
