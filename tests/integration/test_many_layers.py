"""A 200-step Buildfile: more layers than one page of overlay mount options can name."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import write_context

pytestmark = pytest.mark.integration

STEPS = 200  # 200 × "ROOT/layers/<64 hex>" is ~15 KiB of lowerdir: far past mount(2)'s 4 KiB page


def _buildfile() -> str:
    runs = "".join(f"RUN echo layer {i} > /steps/s{i:03d}\n" for i in range(STEPS))
    return ("FROM base:1.0\nRUN mkdir /steps\n" + runs
            + "RUN cat /steps/* | wc -l > /count && cat /steps/s000 /steps/s199 > /ends\n")


def test_200_step_buildfile_builds_and_runs(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", _buildfile())
    mb.build(ctx, "-t", "tall:1")

    # the last RUN saw every earlier layer stacked at once
    out = mb.run("run", "--rm", "tall:1", "cat", "/count", "/ends").stdout.split()
    assert out == [str(STEPS), "layer", "0", "layer", "199"]

    history = json.loads(mb.run("history", "--format", "json", "tall:1").stdout)
    assert len([h for h in history if h.get("diff_id")]) >= STEPS + 2

    if shutil.which("skopeo"):  # an outside reader agrees on the layer count
        raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{mb.root / 'oci'}:tall:1"],
                             check=True, capture_output=True, text=True).stdout
        assert len(json.loads(raw)["layers"]) >= STEPS + 2 + 1  # + base's COPY layer
