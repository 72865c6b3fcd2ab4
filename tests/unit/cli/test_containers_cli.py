"""`ps`, `rm` and `volume ls`: output shapes next to docker's documented examples, on container
records and volumes made by hand (no container runs)."""

from __future__ import annotations

import json

import pytest

from minibuild.containers.volumes import Volumes
from tests.unit.cli.storefixture import hand, run_cli  # noqa: F401 - the fixture


@pytest.fixture
def cli(monkeypatch, capsys, hand):  # noqa: F811
    return lambda *args: run_cli(monkeypatch, capsys, hand.root, *args)


@pytest.fixture
def two(hand):  # noqa: F811
    base = hand.image(hand.layer("base"), tags=("base:1.0",))
    app = hand.image(hand.layer("app"), tags=("app:1",), base=base[1])
    first = hand.container(*base, name="web", argv=("sh", "-c", "while true; do sleep 1; done"),
                           created="2024-01-01T00:00:00Z")
    second = hand.container(*app, name="db", state="created", created="2024-02-01T00:00:00Z")
    return first, second


def test_ps_shows_running_ones_and_all_with_a(cli, two):
    assert cli("ps")[1].splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES"]
    lines = cli("ps", "-a")[1].splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert [line.split()[-1] for line in lines[1:]] == ["db", "web"]  # newest first
    assert '"sh -c while true; d…"' in lines[2]


def test_ps_quiet_no_trunc_and_templates(cli, two):
    first, second = two
    assert cli("ps", "-aq")[1].split() == [second.short_id, first.short_id]
    assert cli("ps", "-aq", "--no-trunc")[1].split() == [second.id, first.id]
    assert '"sh -c while true; do sleep 1; done"' in cli("ps", "-a", "--no-trunc")[1]
    out = cli("ps", "-a", "--format", "{{.Names}}: {{.Status}}")[1]
    assert out.splitlines() == ["db: Created", "web: Exited (0) N/A"]
    table = cli("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}")[1].splitlines()
    assert table[0] == "CONTAINER ID   NAMES" and table[1] == f"{second.short_id}   db"
    row = json.loads(cli("ps", "-a", "--format", "{{json .}}")[1].splitlines()[0])
    assert row["Names"] == "db" and row["State"] == "created" and "RunningFor" in row
    assert cli("ps", "-a", "--format", '{{.Label "x"}}|')[1] == "|\n|\n"


@pytest.mark.parametrize("flt,names", [
    ("status=exited", ["web"]),
    ("status=created", ["db"]),
    ("name=we", ["web"]),
    ("ancestor=base:1.0", ["db", "web"]),  # db's image is built on base
    ("ancestor=app:1", ["db"]),
    ("label=a=b", []),
    ("exited=0", ["web"]),
])
def test_ps_filters(cli, two, flt, names):
    out = cli("ps", "-a", "--filter", flt, "--format", "{{.Names}}")[1]
    assert out.split() == names


def test_status_filter_needs_no_a_and_a_bad_status_is_refused(cli, two):
    assert cli("ps", "-f", "status=exited", "--format", "{{.Names}}")[1] == "web\n"
    code, _, err = cli("ps", "-f", "status=sleepy")
    assert code == 2 and "status=sleepy" in err


def test_rm_of_every_container_ps_lists(cli, two):
    ids = cli("ps", "-aq")[1].split()
    code, out, _ = cli("rm", *ids)
    assert code == 0 and out.split() == ids and cli("ps", "-aq")[1] == ""


def test_volume_ls_quiet_and_templates(cli, hand):  # noqa: F811
    volumes = Volumes(hand.root)
    with volumes.locked():
        volumes.create("data", labels=[("tier", "gold")])
        volumes.create("cache")
    assert cli("volume", "ls")[1] == "DRIVER    VOLUME NAME\nlocal     cache\nlocal     data\n"
    assert cli("volume", "ls", "-q")[1] == "cache\ndata\n"
    assert cli("volume", "ls", "--format", '{{.Name}}={{.Label "tier"}}')[1] == "cache=\ndata=gold\n"
    table = cli("volume", "ls", "--format", "table {{.Name}}\\t{{.Labels}}")[1].splitlines()
    assert table == ["VOLUME NAME   LABELS", "cache         ", "data          tier=gold"]
