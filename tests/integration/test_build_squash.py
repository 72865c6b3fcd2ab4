"""`build --squash`: the build's layers become one, base layers stay shared, content unchanged."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_context
from tests.fstree import listing
from tests.integration.test_build import inspect, layer_names, umoci_unpack

pytestmark = pytest.mark.integration

BUILDFILE = """FROM base:1.0
RUN mkdir -p /data/keep /data/tmp && echo kept > /data/keep/a && head -c 200000 /dev/zero > /data/tmp/big
RUN rm -rf /data/tmp && rm /bin/vi && echo changed > /data/keep/a
ENV STAGE=squashed
RUN echo more > /data/more
CMD ["cat", "/data/keep/a"]
"""


def test_squash_merges_the_build_layers_and_keeps_content(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", BUILDFILE)
    mb.build(ctx, "-t", "plain:1")
    mb.build(ctx, "--squash", "-t", "squashed:1")
    base = inspect(mb, "base:1.0")["Manifest"]["layers"]
    plain = inspect(mb, "plain:1")
    squashed = inspect(mb, "squashed:1")
    layers = squashed["Manifest"]["layers"]
    assert len(plain["Manifest"]["layers"]) == len(base) + 3
    assert len(layers) == len(base) + 1 and layers[:len(base)] == base
    names = layer_names(mb, layers[-1])
    assert "bin/.wh.vi" in names                      # a base file's whiteout stays
    assert not any("tmp" in n for n in names)         # what the build added then deleted is gone
    history = squashed["History"][len(inspect(mb, "base:1.0")["History"]):]
    assert [h.get("empty_layer", False) for h in history] == [True, True, True, True, False]
    assert [h["created_by"].split()[0] for h in history] == ["RUN", "RUN", "ENV", "RUN", "CMD"]
    assert squashed["Config"]["Env"] == plain["Config"]["Env"]
    assert listing(umoci_unpack(mb, "squashed:1", tmp_path)) == listing(umoci_unpack(mb, "plain:1", tmp_path))
    rows = json.loads(mb.run("history", "--format", "json", "squashed:1").stdout)
    assert sum(r["wasted"] for r in rows) < 1000   # the 200 kB are not shipped any more
