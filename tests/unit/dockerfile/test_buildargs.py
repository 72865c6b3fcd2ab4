"""buildargs.py: the args Docker defines itself (the reference's Predefined ARGs, automatic
platform ARGs and BuildKit built-in build args)."""

from __future__ import annotations

import platform

import pytest

from minibuild.dockerfile import buildargs
from minibuild.errors import BuildfileError


def test_host_platform_uses_docker_s_names(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert buildargs.host_platform() == ("linux", "amd64", "")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert buildargs.host_platform() == ("linux", "arm64", "")  # BuildKit normalises v8 away
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    assert buildargs.host_platform() == ("linux", "arm", "v7")
    assert buildargs.format_platform("linux", "arm", "v7") == "linux/arm/v7"


def test_automatic_args(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert buildargs.automatic_args("final") == {
        "TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64",
        "TARGETVARIANT": "", "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux",
        "BUILDARCH": "amd64", "BUILDVARIANT": "", "TARGETSTAGE": "final"}


def test_builtins_are_never_unused_build_args():
    for name in ("HTTP_PROXY", "no_proxy", "TARGETARCH", "TARGETSTAGE", "SOURCE_DATE_EPOCH",
                 "BUILDKIT_SANDBOX_HOSTNAME", "BUILDKIT_INLINE_CACHE"):
        assert buildargs.is_builtin(name), name
    assert not buildargs.is_builtin("VERSION") and not buildargs.is_builtin("Http_Proxy")


def test_proxy_env_keeps_the_reference_s_names_only():
    args = {"https_proxy": "h", "HTTP_PROXY": "H", "Http_Proxy": "x", "V": "1"}
    assert buildargs.proxy_env(args) == (("HTTP_PROXY", "H"), ("https_proxy", "h"))


def test_source_date_epoch_from_the_option_a_build_arg_or_a_global_arg():
    assert buildargs.with_epoch({}, 5) == {"SOURCE_DATE_EPOCH": "5"}
    assert buildargs.with_epoch({"SOURCE_DATE_EPOCH": "7"}, 5) == {"SOURCE_DATE_EPOCH": "7"}
    assert buildargs.with_epoch({"A": "1"}, None) == {"A": "1"}
    assert buildargs.source_date_epoch({"SOURCE_DATE_EPOCH": "7"}, {"SOURCE_DATE_EPOCH": "9"}, "B") == 7
    assert buildargs.source_date_epoch({}, {"SOURCE_DATE_EPOCH": "9"}, "B") == 9
    assert buildargs.source_date_epoch({"SOURCE_DATE_EPOCH": ""}, {}, "B") is None
    assert buildargs.source_date_epoch({}, {}, "B") is None
    with pytest.raises(BuildfileError, match="^B: invalid SOURCE_DATE_EPOCH 'soon'"):
        buildargs.source_date_epoch({"SOURCE_DATE_EPOCH": "soon"}, {}, "B")
