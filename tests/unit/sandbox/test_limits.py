"""Limits as docker's flags give them: parsing, defaults, the record form (pure)."""

from __future__ import annotations

import os

import pytest

from minibuild.sandbox.limits import DEFAULT_BUILD_PIDS, LimitError, Limits, parse_limits


@pytest.mark.parametrize(("text", "size"), [("512m", 512 << 20), ("1g", 1 << 30),
                                            ("6M", 6 << 20), ("64MiB", 64 << 20),
                                            ("10485760", 10 << 20)])
def test_memory_sizes_as_docker_reads_them(text, size):
    assert parse_limits(memory=text).memory == size


@pytest.mark.parametrize("text", ["5m", "lots", "-1g", "1x"])
def test_memory_refused_names_the_flag(text):
    with pytest.raises(LimitError, match=r"^--memory "):
        parse_limits(memory=text)


def test_cpus_and_their_cfs_quota():
    assert parse_limits(cpus="1.5").cpu_quota() == 150_000
    assert parse_limits(cpus="0.01").cpu_quota() == 1000
    assert Limits().cpu_quota() is None


@pytest.mark.parametrize("text", ["0", "0.001", "nan", "inf", "x", str((os.cpu_count() or 1) + 1)])
def test_cpus_refused(text):
    with pytest.raises(LimitError, match=r"^--cpus "):
        parse_limits(cpus=text)


def test_pids_limit_and_its_unlimited_forms():
    assert parse_limits(pids=50).pids == 50
    for unlimited in (0, -1):
        limits = parse_limits(pids=unlimited)
        assert limits.pids is None and limits.with_default_pids().pids is None
    with pytest.raises(LimitError, match="--pids-limit -5"):
        parse_limits(pids=-5)


def test_build_default_pids_is_optional_and_never_overrides_a_given_limit():
    default = Limits().with_default_pids()
    assert default.pids == DEFAULT_BUILD_PIDS and "pids" in default.optional
    assert parse_limits(pids=10).with_default_pids() == Limits(pids=10)


def test_controllers_needed():
    assert Limits().controllers == frozenset()
    assert Limits(memory=1 << 30, pids=5, cpus=1.0, freezer=True).controllers == {
        "memory", "pids", "cpu", "freezer"}


def test_record_form_round_trips():
    limits = Limits(memory=64 << 20, pids=100, cpus=1.5)
    assert limits.to_json() == {"Memory": 64 << 20, "PidsLimit": 100, "NanoCpus": 1_500_000_000}
    assert Limits.from_json(limits.to_json()) == limits
    assert Limits.from_json(None) == Limits()
