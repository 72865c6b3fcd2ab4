"""registries.conf (v2 and v1) and daemon.json: which endpoints a name is pulled from."""

from __future__ import annotations

import json

import pytest

from minibuild.oci.reference import Reference
from minibuild.transfer import registryconf
from minibuild.transfer.registryconf import Endpoint, RegistryConfig, RegistryConfigError

CONF = """
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true

[[registry.mirror]]
location = "mirror.example/hub"

[[registry]]
prefix = "example.com/foo"
location = "internal.example/bar"
insecure = true

[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "registries.conf"
    path.write_text(CONF)
    return registryconf.load(path)


def ref(text: str) -> Reference:
    return Reference.parse(text).normalized()


def test_mirrors_come_first_then_the_registry_itself(conf):
    assert conf.pull_endpoints(ref("debian:12")) == [
        Endpoint("127.0.0.1:5000", "library/debian", True, True),
        Endpoint("mirror.example", "hub/library/debian", False, True),
        Endpoint("docker.io", "library/debian", False, False)]


def test_location_replaces_the_prefix_and_the_longest_prefix_wins(conf):
    assert conf.pull_endpoints(ref("example.com/foo/app:1")) == [Endpoint("internal.example", "bar/app", True)]
    assert conf.pull_endpoints(ref("example.com/other:1")) == [Endpoint("example.com", "other", False)]
    assert conf.push_endpoint(ref("example.com/foo/app:1")) == Endpoint("example.com", "foo/app", True)


def test_blocked_wildcard_and_insecure_hosts(conf):
    assert conf.blocked(ref("evil.example/x")) and not conf.blocked(ref("debian"))
    assert conf.is_insecure("build.corp.example") and conf.is_insecure("127.0.0.1:5000")
    assert conf.is_insecure("internal.example") and not conf.is_insecure("docker.io")


def test_short_names_go_through_the_search_registries_in_order(conf):
    assert [str(r) for r in conf.candidates(Reference.parse("tool:1"))] == [
        "quay.io/tool:1", "docker.io/library/tool:1"]
    assert [str(r) for r in conf.candidates(Reference.parse("ghcr.io/o/tool"))] == ["ghcr.io/o/tool:latest"]
    assert [str(r) for r in RegistryConfig().candidates(Reference.parse("user/app"))] == [
        "docker.io/user/app:latest"]


def test_daemon_json_mirrors_docker_hub(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"registry-mirrors": ["http://127.0.0.1:5000/", "https://m.example"],
                                "insecure-registries": ["reg.lan:5000", "10.0.0.0/8"]}))
    conf = registryconf.load(path)
    assert conf.pull_endpoints(ref("debian")) == [
        Endpoint("127.0.0.1:5000", "library/debian", True, True),
        Endpoint("m.example", "library/debian", False, True), Endpoint("docker.io", "library/debian")]
    assert conf.is_insecure("reg.lan:5000") and conf.pull_endpoints(ref("quay.io/a")) == [Endpoint("quay.io", "a")]


def test_v1_lists_and_the_usual_places(tmp_path, monkeypatch):
    monkeypatch.delenv(registryconf.ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "registries.conf").write_text(
        "[registries.search]\nregistries = ['quay.io']\n[registries.insecure]\nregistries = ['lan:5000']\n"
        "[registries.block]\nregistries = ['bad.example']\n")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "daemon.json").write_text('{"registry-mirrors": ["https://m.example"]}')
    conf = registryconf.load()
    assert conf.search == ("quay.io",) and conf.is_insecure("lan:5000") and conf.blocked(ref("bad.example/x"))
    assert conf.pull_endpoints(ref("debian"))[0] == Endpoint("m.example", "library/debian", False, True)
    monkeypatch.setenv(registryconf.ENV, str(tmp_path / "none.conf"))
    with pytest.raises(RegistryConfigError, match="does not exist"):
        registryconf.load()


def test_a_broken_file_is_one_clear_error(tmp_path):
    path = tmp_path / "registries.conf"
    path.write_text("[[registry]]\nprefix = \n")
    with pytest.raises(RegistryConfigError, match="registries.conf"):
        registryconf.load(path)
    path.write_text("[[registry]]\ninsecure = true\n")
    with pytest.raises(RegistryConfigError, match="prefix or a location"):
        registryconf.load(path)
