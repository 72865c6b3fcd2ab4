"""RUN --network against the build's mode: host only when the build allows it (finding 4)."""

from __future__ import annotations

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.steps import StepFactory
from minibuild.dockerfile import metadata
from minibuild.dockerfile.parser import parse
from minibuild.errors import BuildfileError
from minibuild.oci.image import ContainerConfig


def _network(tmp_path, flag: str, build: str, allow: bool = False) -> str:
    """The network the RUN step of `RUN FLAG true` gets in a build with --network BUILD."""
    text = f"FROM scratch\nRUN {flag} true\n".replace("  ", " ")
    run = parse(text, "Buildfile").instructions[1]
    factory = StepFactory(sandbox=None, context=BuildContext(tmp_path), output=lambda b: None,
                          scratch=lambda p: tmp_path, network=build, allow_host_network=allow)
    step = factory.run(run, ContainerConfig(), metadata.Scope(), "RUN")
    return step.description["network"]


@pytest.mark.parametrize("build", ["default", "none", "host"])
def test_without_a_flag_or_with_default_the_step_takes_the_build_s_network(tmp_path, build):
    assert _network(tmp_path, "", build) == build
    assert _network(tmp_path, "--network=default", build) == build


@pytest.mark.parametrize("build", ["default", "none", "host"])
def test_none_is_always_allowed(tmp_path, build):
    assert _network(tmp_path, "--network=none", build) == "none"


@pytest.mark.parametrize("build", ["default", "none"])
def test_host_without_the_entitlement_is_refused_at_its_line(tmp_path, build):
    with pytest.raises(BuildfileError, match="--allow network.host") as caught:
        _network(tmp_path, "--network=host", build)
    assert caught.value.location() == "Buildfile:2:1"


def test_host_with_the_entitlement_or_a_host_build_is_allowed(tmp_path):
    assert _network(tmp_path, "--network=host", "none", allow=True) == "host"
    assert _network(tmp_path, "--network=host", "host") == "host"


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(BuildfileError, match="--network=bridge is not supported"):
        _network(tmp_path, "--network=bridge", "default")
