"""`build --secret` options: every form docker takes, and every mistake (secretsource.py)."""

from __future__ import annotations

import pytest

from minibuild.dockerfile.secretsource import SecretSource, parse_secret_option


@pytest.mark.parametrize("text, source", [
    ("id=tok,src=/run/tok", SecretSource("tok", path="/run/tok")),
    ("id=tok,source=/run/tok", SecretSource("tok", path="/run/tok")),
    ("id=tok,type=file,src=f", SecretSource("tok", path="f")),
    ("id=tok,env=TOKEN", SecretSource("tok", env="TOKEN")),
    ("id=tok,type=env,src=TOKEN", SecretSource("tok", env="TOKEN")),
    ("id=tok,type=env", SecretSource("tok", env="tok")),
    ("id=GITHUB_TOKEN", SecretSource("GITHUB_TOKEN", env="GITHUB_TOKEN")),
])
def test_secret_options(text, source):
    assert parse_secret_option(text) == source


@pytest.mark.parametrize("text, message", [
    ("src=/x", "needs an id="), ("id=", "needs an id="),
    ("id=a,type=ssh", "unknown secret type 'ssh'"), ("id=a,type=file", "needs src=PATH"),
    ("id=a,colour=red", "unexpected 'colour=red'"), ("id=a,src", "unexpected 'src'"),
])
def test_secret_option_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_secret_option(text)


def test_keys_are_case_insensitive_and_the_type_too():
    assert parse_secret_option("ID=tok,SRC=/f,Type=FILE") == SecretSource("tok", path="/f")


def test_describe_names_the_source_never_a_value():
    assert SecretSource("a", path="/run/a").describe() == "file /run/a"
    assert SecretSource("a", env="TOKEN").describe() == "environment variable TOKEN"

