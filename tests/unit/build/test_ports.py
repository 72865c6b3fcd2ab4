"""The engine's ports match what the real store and sandbox offer (names and parameters), so a
rename on one side shows here rather than in an integration run."""

from __future__ import annotations

import inspect

import pytest

from minibuild.build import ports
from minibuild.build.cache import Cache
from minibuild.sandbox.sandbox import Sandbox
from minibuild.store.layout import Store


def members(protocol: type) -> dict[str, object]:
    """The methods and attributes a Protocol asks for (its own and its bases')."""
    names = {}
    for cls in reversed(protocol.__mro__):
        if not getattr(cls, "_is_protocol", False):
            continue
        names.update({n: v for n, v in vars(cls).items() if not n.startswith("_")})
        names.update({n: None for n in getattr(cls, "__annotations__", {})})
    return names


def check(protocol: type, implementation: object) -> None:
    """Every member of the protocol exists on the implementation, taking the same parameters."""
    name_of = type(implementation).__name__
    for name, wanted in members(protocol).items():
        assert hasattr(implementation, name), f"{name_of} lacks {protocol.__name__}.{name}"
        if callable(wanted):
            have = inspect.signature(getattr(implementation, name)).parameters
            for param in inspect.signature(wanted).parameters.values():
                if param.name != "self":
                    assert param.name in have, f"{name_of}.{name} takes no {param.name!r}"


@pytest.mark.parametrize("protocol", [ports.BlobStore, ports.LayerStore, ports.ImageStore,
                                      ports.BuildStore])
def test_the_store_is_a_build_store(protocol, tmp_path):
    check(protocol, Store(tmp_path))  # the constructor touches nothing on disk


def test_the_sandbox_is_a_runner():
    check(ports.Runner, Sandbox())


def test_the_step_cache_is_a_step_cache(tmp_path):
    check(ports.StepCache, Cache(Store(tmp_path)))


def test_a_missing_method_is_caught():
    class Half:
        def run(self, rootfs, process, on_output, *, mounts=()):
            return 0

    with pytest.raises(AssertionError, match="call"):
        check(ports.Runner, Half())
