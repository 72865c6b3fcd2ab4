"""`kill`, `wait`, `rename`, `top`, `logs --tail`: docker's shapes and errors on container
records made by hand (the running cases are in tests/integration/test_lifecycle.py)."""

from __future__ import annotations

import pytest

from minibuild.cli.lifecycle import pid_rows
from minibuild.containers.records import Containers
from minibuild.errors import MinibuildError
from tests.unit.cli.storefixture import hand, run_cli  # noqa: F401 - the fixture


@pytest.fixture
def cli(monkeypatch, capsys, hand):  # noqa: F811
    return lambda *args: run_cli(monkeypatch, capsys, hand.root, *args)


@pytest.fixture
def web(hand):  # noqa: F811
    return hand.container(*hand.image(hand.layer("base"), tags=("base:1.0",)), name="web")


def test_rename_and_its_errors(cli, hand, web):  # noqa: F811
    assert cli("rename", "web", "api")[0] == 0
    assert Containers(hand.root).load(web.id).name == "api"
    hand.container(*hand.image(hand.layer("x"), tags=("x:1",)), name="db")
    code, _, err = cli("rename", "api", "db")
    assert code == 1 and "already in use" in err
    code, _, err = cli("rename", "api", "-bad name")
    assert code != 0


def test_wait_prints_the_exit_code(cli, web):
    assert cli("wait", "web")[1] == "0\n"


def test_kill_and_top_want_a_running_container(cli, web):
    code, _, err = cli("kill", "web")
    assert code == 1 and f"container {web.short_id} is not running" in err
    assert cli("top", "web")[0] == 1
    code, _, err = cli("kill", "-s", "NOPE", "web")
    assert code == 1 and "unknown stop signal" in err


def test_logs_tail(cli, hand, web):  # noqa: F811
    Containers(hand.root).log_path(web.id).write_bytes(b"one\ntwo\nthree\n")
    assert cli("logs", "web")[1] == "one\ntwo\nthree\n"
    assert cli("logs", "--tail", "2", "web")[1] == "two\nthree\n"
    assert cli("logs", "-n", "0", "web")[1] == ""
    assert cli("logs", "--tail", "9", "web")[1] == "one\ntwo\nthree\n"
    assert cli("logs", "--tail", "all", "web")[1] == "one\ntwo\nthree\n"
    assert cli("logs", "-t", "web")[1] == "one\ntwo\nthree\n"  # an older raw log: no times


def test_logs_tail_without_a_final_newline(cli, hand, web):  # noqa: F811
    Containers(hand.root).log_path(web.id).write_bytes(b"one\ntwo")
    assert cli("logs", "--tail", "1", "web")[1] == "two"


def test_start_attach_takes_one_container(cli, web):
    assert cli("start", "-a", "web", "web")[0] == 2


def test_pid_rows_keeps_header_and_the_containers_rows():
    out = ("UID  PID  PPID  C STIME TTY TIME CMD\n"
           "root 10   1     0 10:00 ?   0:00 sleep 600\n"
           "root 11   1     0 10:00 ?   0:00 other\n")
    assert pid_rows(out, {"10"}) == [out.splitlines()[0], out.splitlines()[1]]
    with pytest.raises(MinibuildError, match="PID field"):
        pid_rows("USER COMMAND\n", {"10"})
