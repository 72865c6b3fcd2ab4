"""docker's command groups (`image`, `container`, `system`) as aliases, the prunes they add,
and hidden commands kept out of help and "did you mean"."""

from __future__ import annotations

import pytest

from minibuild.containers.records import Containers
from tests.unit.cli.storefixture import hand, run_cli  # noqa: F401 - the fixture


@pytest.fixture
def cli(monkeypatch, capsys, hand):  # noqa: F811
    return lambda *args: run_cli(monkeypatch, capsys, hand.root, *args)


@pytest.fixture
def made(hand):  # noqa: F811
    """base:1.0 used by a stopped container, app:1 unused, and an untagged image."""
    base = hand.image(hand.layer("base"), tags=("base:1.0",))
    app = hand.image(hand.layer("app"), tags=("app:1",))
    loose = hand.image(hand.layer("loose"))
    stopped = hand.container(*base, name="web")
    return base, app, loose, stopped


def test_image_and_container_ls_are_images_and_ps(cli, made):
    assert cli("image", "ls")[1] == cli("images")[1]
    assert cli("image", "ls", "-q")[1] == cli("images", "-q")[1]
    assert cli("container", "ls", "-a")[1] == cli("ps", "-a")[1]
    assert cli("system", "df")[0] == 0


def test_typed_inspect_looks_for_one_kind(cli, hand, made):  # noqa: F811
    code, out, err = cli("image", "inspect", "-f", "{{.Id}}", "base:1.0")
    assert code == 0 and out.strip() == hand.image_id(made[0][0])
    code, out, _ = cli("container", "inspect", "-f", "{{.Name}}", "web")
    assert code == 0 and out.strip() == "/web"
    assert cli("container", "inspect", "base:1.0")[0] == 1


def test_image_prune_drops_dangling_only_and_all_unused_with_a(cli, hand, made):  # noqa: F811
    loose_id = hand.image_id(made[2][0])
    hand.close()
    code, out, _ = cli("image", "prune", "-f")
    assert code == 0 and f"deleted: {loose_id}" in out and "untagged" not in out
    assert out.splitlines()[0] == "Deleted Images:" and "Total reclaimed space:" in out
    assert "app " in cli("images")[1]
    out = cli("image", "prune", "-a", "-f")[1]
    assert "untagged: app:1" in out and "base" not in out  # base: a container uses it
    assert [line.split()[0] for line in cli("images")[1].splitlines()[1:]] == ["base"]


def test_image_prune_asks_without_f(cli, made, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, _ = cli("image", "prune")
    assert code == 0 and out.startswith("WARNING! This will remove all dangling images.")
    assert "Deleted" not in out


def test_container_prune_removes_stopped_ones(cli, hand, made):  # noqa: F811
    code, out, _ = cli("container", "prune", "-f")
    assert code == 0 and out.splitlines()[:2] == ["Deleted Containers:", made[3].id]
    assert Containers(hand.root).all() == []


def test_system_prune_and_prune_a(cli, hand, made):  # noqa: F811
    hand.close()
    out = cli("system", "prune", "-f")[1]
    assert "Deleted Containers:" in out and "Deleted Images:" in out
    out = cli("prune", "-a", "-f")[1]
    assert "untagged: app:1" in out and "untagged: base:1.0" in out  # its container is gone


def test_hidden_commands_are_not_suggested_or_listed(cli):
    code, _, err = cli("container-supervis")
    assert code == 2 and "container-supervise" not in err
    assert "container-supervise" not in cli("--help")[1]
    assert "Did you mean 'images'" in cli("imags")[2] or "'images'" in cli("imags")[2]
