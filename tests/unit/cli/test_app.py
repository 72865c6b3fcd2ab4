"""The top-level group imports only the module of the command a command line names."""

from __future__ import annotations

import importlib
import subprocess
import sys

from minibuild.cli import app


def test_command_table_matches_what_each_module_registers():
    for module, names in app.COMMAND_MODULES.items():
        importlib.import_module(f"minibuild.cli.{module}")
        registered = {name for name, command in app.cli.commands.items()
                      if command.callback is None or command.callback.__module__ == f"minibuild.cli.{module}"
                      or module == "groups" and name in names}
        assert set(names) <= registered, module
    listed = {name for names in app.COMMAND_MODULES.values() for name in names}
    assert listed == set(app.cli.commands)


def test_a_command_line_imports_only_its_command_module(tmp_path):
    code = ("import sys, runpy; sys.argv=['minibuild','images','-q'];\n"
            "try:\n runpy.run_module('minibuild', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('minibuild.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MINIBUILD_ROOT": str(tmp_path), "MINIBUILD_MEMO": "0", "PATH": "/usr/bin:/bin"})
    loaded = out.stdout.strip().splitlines()[-1]
    assert "minibuild.cli.images" in loaded
    for other in ("transfer", "run", "containers", "maintenance", "inspection"):
        assert f"minibuild.cli.{other}'" not in loaded, loaded


def test_unknown_command_suggests_visible_names_only():
    from click.testing import CliRunner

    result = CliRunner().invoke(app.cli, ["container-supervis"])
    assert result.exit_code != 0
    assert "container-supervise" not in result.output
