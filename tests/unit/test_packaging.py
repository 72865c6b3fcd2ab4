"""The package as installed: the grammar ships inside it, the entry points exist."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_source_grammar_is_what_the_parser_reads():
    from minibuild.dockerfile import syntax

    assert syntax.grammar_text() == (REPO / "grammar" / "buildfile.lark").read_text()


def test_console_script_is_declared():
    try:
        dist = importlib.metadata.distribution("minibuild")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("minibuild is not installed (pip install .)")
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts.get("minibuild") == "minibuild.__main__:main"


def test_a_built_wheel_carries_the_grammar_and_every_subpackage(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-q", "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-200:]}")
    wheel = next(tmp_path.glob("minibuild-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "minibuild/grammar/buildfile.lark" in names
    assert "minibuild/sandbox/seccomp-default.json" in names
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "minibuild").rglob("*.py")
               if "grammar" not in p.parts}
    assert sources <= names
