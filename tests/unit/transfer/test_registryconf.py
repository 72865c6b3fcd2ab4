"""registries.conf (v2 and v1) and daemon.json: which endpoints a name is pulled from."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.fixture
def places(tmp_path, monkeypatch):
    """(user dir, system dir, alias cache file), all empty, as _from_places reads them."""
    user, system = tmp_path / "user", tmp_path / "system"
    (user / "registries.conf.d").mkdir(parents=True)
    (system / "registries.conf.d").mkdir(parents=True)
    cache = tmp_path / "cache" / "short-name-aliases.conf"
    monkeypatch.setattr(registryconf, "short_name_aliases_file", lambda: cache)
    return user, system, cache


def test_drop_ins_apply_in_order_as_containers_image_does(places):
    user, system, _ = places
    (system / "registries.conf").write_text(
        'unqualified-search-registries = ["quay.io"]\n'
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
        '[[registry.mirror]]\nlocation = "old.example"\n'
        '[[registry]]\nprefix = "keep.example"\ninsecure = true\n')
    (system / "registries.conf.d" / "20-mirror.conf").write_text(
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n[[registry.mirror]]\nlocation = "new.example"\n')
    (system / "registries.conf.d" / "10-search.conf").write_text('unqualified-search-registries = ["a.example", "b.example"]\n')
    (system / "registries.conf.d" / "notes.txt").write_text("not a drop-in")
    (user / "registries.conf.d" / "05-user.conf").write_text('unqualified-search-registries = ["user.example"]\n')
    conf = registryconf._from_places(user, system)
    assert [e.host for e in conf.pull_endpoints(ref("debian"))] == ["new.example", "docker.io"]  # replaced by prefix
    assert conf.is_insecure("keep.example")  # other tables stay
    assert conf.search == ("user.example",)  # the user's directory comes after the system's
    assert [Path(s).name for s in conf.sources] == ["registries.conf", "10-search.conf", "20-mirror.conf", "05-user.conf"]


def test_the_users_own_file_hides_the_system_drop_ins(places):
    user, system, _ = places
    (user / "registries.conf").write_text('unqualified-search-registries = ["user.example"]\n')
    (system / "registries.conf.d" / "x.conf").write_text('unqualified-search-registries = ["system.example"]\n')
    assert registryconf._from_places(user, system).search == ("user.example",)


def test_aliases_resolve_short_names_and_the_cache_file_wins(places):
    user, system, cache = places
    (system / "registries.conf").write_text(
        'unqualified-search-registries = ["quay.io", "docker.io"]\n'
        '[aliases]\n"app" = "127.0.0.1:5000/team/app"\n"gone" = "quay.io/gone"\n"ubi8/ubi" = "registry.access.redhat.com/ubi8/ubi"\n'
        '"hub" = "index.docker.io/library/debian"\n')
    (system / "registries.conf.d" / "reset.conf").write_text('[aliases]\n"gone" = ""\n')
    conf = registryconf._from_places(user, system)
    assert conf.candidates(Reference.parse("app:2")) == [Reference("127.0.0.1:5000/team/app", "2")]
    assert conf.candidates(Reference.parse("ubi8/ubi")) == [ref("registry.access.redhat.com/ubi8/ubi")]
    assert conf.candidates(Reference.parse("hub")) == [ref("docker.io/library/debian")]
    assert conf.candidates(Reference.parse("gone")) == [ref("quay.io/gone"), ref("docker.io/gone")]  # reset: searched
    cache.parent.mkdir()
    cache.write_text('[aliases]\n"app" = "cache.example/app"\n')
    assert registryconf._from_places(user, system).candidates(Reference.parse("app")) == [ref("cache.example/app")]


@pytest.mark.parametrize(("mode", "ambiguous"), [("enforcing", True), ("permissive", False), ("disabled", False)])
def test_short_name_mode_without_a_terminal(places, mode, ambiguous):
    user, system, _ = places
    (system / "registries.conf").write_text(
        f'short-name-mode = "{mode}"\nunqualified-search-registries = ["quay.io", "docker.io"]\n[aliases]\n"app" = "quay.io/app"\n')
    conf = registryconf._from_places(user, system)
    assert conf.candidates(Reference.parse("app")) == [ref("quay.io/app")]  # an alias is never ambiguous
    assert conf.candidates(Reference.parse("quay.io/x")) == [ref("quay.io/x")]
    if ambiguous:
        with pytest.raises(RegistryConfigError, match="could come from quay.io, docker.io.*never prompts"):
            conf.candidates(Reference.parse("debian"))
    else:
        assert conf.candidates(Reference.parse("debian")) == [ref("quay.io/debian"), ref("docker.io/debian")]
    (system / "registries.conf").write_text(f'short-name-mode = "{mode}"\nunqualified-search-registries = ["quay.io"]\n')
    assert registryconf._from_places(user, system).candidates(Reference.parse("debian")) == [ref("quay.io/debian")]


@pytest.mark.parametrize(("text", "message"), [
    ('short-name-mode = "strict"\n', "not one of enforcing"),
    ('[aliases]\n"quay.io/app" = "quay.io/app"\n', "a short name"),
    ('[aliases]\n"app:1" = "quay.io/app"\n', "a short name"),
    ('[aliases]\n"app" = "app"\n', "must name a registry"),
    ('[aliases]\n"app" = "quay.io/app:1"\n', "must name a registry"),
])
def test_bad_aliases_and_modes_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "registries.conf"
    path.write_text(text)
    with pytest.raises(RegistryConfigError, match=message):
        registryconf.load(path)


def test_a_drop_in_must_be_v2(places):
    user, system, _ = places
    (system / "registries.conf.d" / "old.conf").write_text("[registries.search]\nregistries = ['quay.io']\n")
    with pytest.raises(RegistryConfigError, match="old.conf: a drop-in must use the v2 format"):
        registryconf._from_places(user, system)
