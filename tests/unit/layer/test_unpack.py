"""unpack_layer at depth: a 10,000-deep layer (past PATH_MAX) round-trips through snapshot."""

from __future__ import annotations

import io

from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import write_layer
from minibuild.layer.unpack import unpack_layer
from tests.deeptree import DEEP, chain_depth, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture


def test_10000_levels_round_trip(fast_tmp):
    make_deep(fast_tmp / "upper", bottom=b"deep")
    sink = io.BytesIO()
    written = write_layer(fast_tmp / "upper", sink, compression=Compression.GZIP)
    (fast_tmp / "lower").mkdir()
    sink.seek(0)
    diff_id, summary = unpack_layer(sink, written.media_type, fast_tmp / "lower")
    assert diff_id == written.diff_id
    assert summary.files == written.summary.files
    assert chain_depth(fast_tmp / "lower") == (DEEP, b"deep")
