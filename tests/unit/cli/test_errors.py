"""The command line turns every expected failure into one line and an exit code (no root needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from minibuild.cli import app as cli
from minibuild.sandbox import sandbox


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["minibuild", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def context(tmp_path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Buildfile").write_text("FROM scratch\nRUN true\n")
    return tmp_path / "ctx"


def test_not_root_is_one_clear_line(monkeypatch, capsys, tmp_path, context):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    code, _, err = run_cli(monkeypatch, capsys, "--root", str(tmp_path / "s"), "build", str(context))
    assert code == 1
    assert err.strip() == ("error: minibuild build needs root (overlayfs mounts and chroot) or the "
                           "rootless user namespace, which the `minibuild` command enters")


def test_no_overlay_is_one_clear_line(monkeypatch, capsys, tmp_path, context):
    fake = tmp_path / "filesystems"
    fake.write_text("nodev\tproc\n\text4\n")
    real_path = sandbox.Path
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "Path", lambda p: fake if p == "/proc/filesystems" else real_path(p))
    code, _, err = run_cli(monkeypatch, capsys, "--root", str(tmp_path / "s"), "build", str(context))
    assert code == 1 and "overlayfs is not available" in err and "\n" not in err.strip()


def test_buildfile_errors_come_before_root_checks(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    (tmp_path / "Buildfile").write_text("FROM scratch\nRUNN true\n")
    code, _, err = run_cli(monkeypatch, capsys, "--root", str(tmp_path / "s"), "build", str(tmp_path))
    assert code == 1
    assert err.strip().endswith('Buildfile:2:1: unknown instruction "RUNN" (did you mean RUN?)')


def test_unknown_image_bad_reference_and_usage(monkeypatch, capsys, tmp_path):
    root = str(tmp_path / "s")
    code, _, err = run_cli(monkeypatch, capsys, "--root", root, "history", "nope:1")
    assert code == 1 and err.startswith("error: image not found: nope:1")
    code, _, err = run_cli(monkeypatch, capsys, "--root", root, "tag", "nope:1", "Bad Ref")
    assert code == 2 and "Bad Ref" in err
    code, _, err = run_cli(monkeypatch, capsys, "--root", root, "build", "--progress", "fancy")
    assert code == 2 and "fancy" in err


def test_parse_prints_json(monkeypatch, capsys, tmp_path):
    path = tmp_path / "Buildfile"
    path.write_text("FROM scratch\nCMD [\"sh\"]\n")
    code, out, _ = run_cli(monkeypatch, capsys, "parse", "-f", str(path))
    assert code == 0 and '"instruction": "CMD"' in out and '"form": "exec"' in out
