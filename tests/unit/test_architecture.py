"""The package layout holds: import-linter's contracts (pyproject.toml) pass, and they cover every
subsystem package, so a new package cannot slip past the layers contract."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _layered() -> set[str]:
    layers = next(c for c in _config()["contracts"] if c["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in layer.split("|")}


def test_every_subsystem_package_is_in_the_layers_contract():
    packages = {f"minibuild.{p.parent.name}" for p in (ROOT / "minibuild").glob("*/__init__.py")
                if p.parent.name != "grammar"}
    modules = {f"minibuild.{p.stem}" for p in (ROOT / "minibuild").glob("*.py")
               if p.stem not in ("__init__", "__main__")}
    assert packages | modules <= _layered()


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed")
def test_import_contracts_are_kept():
    out = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
