"""`build`'s option parsing that is ours to get right: --build-arg with and without a value."""

from __future__ import annotations

import click
import pytest

from minibuild.cli.building import build_arg_values


def test_build_args_with_a_value_and_the_last_one_winning():
    assert build_arg_values(("A=1", "B=", "A=2", "C=x=y"), {}) == {"A": "2", "B": "", "C": "x=y"}


def test_a_bare_key_takes_the_environment_s_value_or_is_left_out():
    # docker: `--build-arg KEY` reads KEY from the environment; unset there, the ARG keeps its
    # default (it used to become an empty string here)
    env = {"FROM_ENV": "yes", "EMPTY": ""}
    assert build_arg_values(("FROM_ENV", "EMPTY", "UNSET"), env) == {"FROM_ENV": "yes", "EMPTY": ""}


def test_a_missing_key_is_a_usage_error():
    with pytest.raises(click.BadParameter, match="want KEY=VALUE"):
        build_arg_values(("=1",), {})
