"""Docker Hub names, mirrors and per-registry settings from registries.conf / daemon.json, against
a real docker-registry standing in for docker.io. Every test names its config file with
--registries-conf: the machine's /etc/containers and /etc/docker are never read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path):
    with registry_server(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def hub_mirror(mb, registry, tmp_path) -> Path:
    """The local registry holds base:1.0 as library/debian:12; a registries.conf mirrors
    docker.io to it."""
    mb.run("push", "-q", "base:1.0", f"{registry.host}/library/debian:12")
    conf = tmp_path / "registries.conf"
    conf.write_text(f'unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nprefix = "docker.io"\n'
                     f'location = "docker.io"\n\n[[registry.mirror]]\nlocation = "{registry.host}"\n'
                     'insecure = true\n')
    return conf


def images(mb: Minibuild) -> set[tuple[str, str]]:
    out = mb.run("images", "--format", "{{.Repository}} {{.Tag}}").stdout
    return {tuple(line.split()) for line in out.splitlines()}


def test_from_debian_is_served_by_the_docker_hub_mirror(mb, empty_mb, hub_mirror, registry, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM debian:12\nRUN echo mirrored > /m\n")
    empty_mb.run("--registries-conf", str(hub_mirror), "build", "--progress", "plain", "-t", "app:1", str(ctx))
    assert registry.requests("GET", "/v2/library/debian/manifests/12") >= 1
    names = images(empty_mb)
    assert ("debian", "12") in names and ("app", "1") in names  # the familiar form, as docker shows it
    ours = json.loads(mb.run("inspect", "base:1.0").stdout)[0]["Descriptor"]["digest"]
    for spelling in ("debian:12", "docker.io/library/debian:12", "index.docker.io/library/debian:12"):
        assert json.loads(empty_mb.run("inspect", spelling).stdout)[0]["Descriptor"]["digest"] == ours
    index = json.loads((empty_mb.root / "oci/index.json").read_text())
    stored = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]
                    if "annotations" in m)
    assert stored == ["app:1", "debian:12"]
    again = empty_mb.run("--registries-conf", str(hub_mirror), "pull", "docker.io/library/debian:12")
    assert again.stdout.strip() == ours


def test_daemon_json_registry_mirrors(mb, empty_mb, registry, tmp_path):
    mb.run("push", "-q", "base:1.0", f"{registry.host}/library/busybox:1")
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"registry-mirrors": [f"http://{registry.host}"]}))
    pulled = empty_mb.run("--registries-conf", str(daemon), "pull", "-q", "busybox:1").stdout.strip()
    assert pulled == json.loads(mb.run("inspect", "base:1.0").stdout)[0]["Descriptor"]["digest"]


def test_a_name_nowhere_is_one_line_naming_each_registry_tried(empty_mb, hub_mirror, registry, tmp_path):
    proc = empty_mb.run("--registries-conf", str(hub_mirror), "pull", "nosuch:1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.splitlines()[0]
    assert line.startswith("error: cannot pull nosuch:1: ")
    assert f"{registry.host} (mirror)" in line and "MANIFEST_UNKNOWN" in line and "docker.io" in line
    ctx = write_context(tmp_path / "ctx", "FROM nosuch:1\n")
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    built = empty_mb.run("--registries-conf", str(empty), "build", str(ctx), check=False)
    assert built.returncode == 1 and "Traceback" not in built.stderr
    assert "Buildfile:1:1: FROM nosuch:1: image not found in the store, and cannot pull nosuch:1: " \
           in built.stderr and "docker.io" in built.stderr


def test_blocked_and_per_registry_insecure(mb, empty_mb, tmp_path):
    with registry_server(tmp_path / "reg2", address="127.0.0.2") as other:
        target = f"{other.host}/team/app:1"
        refused = mb.run("push", "base:1.0", target, check=False)  # https, as for any other host
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        conf = tmp_path / "insecure.conf"
        conf.write_text(f'[[registry]]\nlocation = "{other.host}"\ninsecure = true\n\n'
                        '[[registry]]\nprefix = "docker.io/library/forbidden"\nblocked = true\n')
        mb.run("--registries-conf", str(conf), "push", "-q", "base:1.0", target)
        empty_mb.run("--registries-conf", str(conf), "pull", "-q", target)
    blocked = empty_mb.run("--registries-conf", str(conf), "pull", "forbidden:1", check=False)
    assert blocked.returncode == 1 and "blocked by" in blocked.stderr and str(conf) in blocked.stderr


def test_a_short_name_alias_from_a_drop_in_resolves_to_the_local_registry(mb, empty_mb, registry, tmp_path):
    """The usual places, not --registries-conf: the user's registries.conf (which hides the
    system's file and drop-ins) plus a drop-in beside it holding the alias."""
    pushed = mb.run("push", "-q", "base:1.0", f"{registry.host}/team/aliased:7").stdout.strip()
    config = tmp_path / "xdg" / "containers"
    (config / "registries.conf.d").mkdir(parents=True)
    (config / "registries.conf").write_text('short-name-mode = "enforcing"\n'
                                            'unqualified-search-registries = ["quay.io", "docker.io"]\n'
                                            f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    (config / "registries.conf.d" / "50-alias.conf").write_text(
        f'[aliases]\n"mbtest-aliased" = "{registry.host}/team/aliased"\n')
    env = {"MINIBUILD_REGISTRIES_CONF": "", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert empty_mb.run("pull", "mbtest-aliased:7", env=env).stdout.strip() == pushed
    assert registry.requests("GET", "/v2/team/aliased/manifests/7") == 1
    ctx = write_context(tmp_path / "ctx", "FROM mbtest-aliased:7\nRUN echo via-alias > /a\n")
    empty_mb.run("build", "--progress", "plain", "-t", "app:1", str(ctx), env=env)

    ambiguous = empty_mb.run("pull", "mbtest-unaliased:1", env=env, check=False)
    lines = [line for line in ambiguous.stderr.splitlines() if line.startswith("error:")]
    assert ambiguous.returncode == 1 and "Traceback" not in ambiguous.stderr
    assert len(lines) == 1 and "enforcing" in lines[0] and "never prompts" in lines[0], ambiguous.stderr
