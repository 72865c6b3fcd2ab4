"""Steps prepared from instructions (steps.py)."""

from __future__ import annotations

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.steps import StepFactory
from minibuild.dockerfile import metadata
from minibuild.dockerfile.parser import parse
from minibuild.errors import BuildError
from minibuild.oci.image import ContainerConfig


def test_a_copy_whose_sources_change_while_copying_is_refused(tmp_path):
    (tmp_path / "f").write_text("old\n")
    copy = parse("FROM scratch\nCOPY f /f\n").instructions[1]
    factory = StepFactory(sandbox=None, context=BuildContext(tmp_path), output=lambda b: None,
                          scratch=lambda p: tmp_path, network="host")
    step = factory.copy(copy, ContainerConfig(), metadata.Scope(), None)
    step.verify()  # nothing changed: fine
    (tmp_path / "f").write_text("new\n")
    with pytest.raises(BuildError, match="changed while it was being copied"):
        step.verify()
