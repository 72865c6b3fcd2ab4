"""Snapshot speed, size and memory vs `tar -cf - DIR | pigz -1` and `tar -cf - DIR | zstd -3 -T0`;
prints figures, asserts nothing.

Usage: python3 bench/snapshot_bench.py [--scratch DIR] [--skip-1g] [--runs 5] [--tree DIR]...

The minibuild sink hashes what it receives (as the store's blob writer does) but writes nothing.
`minibuild gzip` is ISA-L (the default), `gzip zlib` the SOURCE_DATE_EPOCH path. `--tree` adds an
existing directory (e.g. a Debian rootfs) to the two made-up trees.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import write_layer

MIB = 1 << 20


class HashingNull:
    """A sink like the store's blob writer: hashes what it receives, keeps nothing."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def make_big_file(path: Path, size: int) -> None:
    """Write `size` real bytes (no holes): each 256 KiB of random data appears twice, ~2:1 for zstd."""
    with open(path, "wb") as f:
        written = 0
        while written < size:
            half = os.urandom(256 * 1024)
            block = (half + half)[: size - written]
            f.write(block)
            written += len(block)


def make_small_tree(root: Path, count: int) -> None:
    """`count` files of 0..4 KiB in 100 dirs, text-like content."""
    for i in range(count):
        d = root / f"d{i % 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes((b"line %d of some file\n" % i) * (i % 200))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def time_minibuild(root: Path, compression: Compression, clamp: int | None = None) -> tuple[float, int]:
    sink = HashingNull()
    t = time.perf_counter()
    write_layer(root, sink, compression=compression, clamp_mtime=clamp)
    return time.perf_counter() - t, sink.size


def time_shell(cmd: str) -> tuple[float, int]:
    """Seconds of a pipeline that ends in `wc -c`, and the byte count it printed."""
    t = time.perf_counter()
    out = subprocess.run(cmd + " | wc -c", shell=True, check=True, executable="/bin/bash",
                         capture_output=True, text=True).stdout
    return time.perf_counter() - t, int(out.strip())


def median_of(runs: int, fn) -> tuple[float, float, float, int]:
    """(median, min, max) seconds of `runs` calls of fn() -> (seconds, size), and the size."""
    got = [fn() for _ in range(runs)]
    secs = [g[0] for g in got]
    return statistics.median(secs), min(secs), max(secs), got[-1][1]


def fmt(t: tuple[float, float, float, int]) -> str:
    return f"{t[0]:5.2f} s [{t[1]:.2f}-{t[2]:.2f}]"


def compare(label: str, root: Path, runs: int) -> None:
    size = tree_bytes(root)
    mb = size / 1e6
    print(f"{label}: {mb:.0f} MB of file content (page cache warm), median [min-max] of {runs}")
    time_minibuild(root, Compression.NONE)  # warm the page cache for everyone
    parent, name = root.parent, root.name
    tar = f"tar -C {parent} -cf - {name}"
    rows = {
        "minibuild none": lambda: time_minibuild(root, Compression.NONE),
        "minibuild gzip": lambda: time_minibuild(root, Compression.GZIP),
        "minibuild gzip zlib": lambda: time_minibuild(root, Compression.GZIP, clamp=1700000000),
        "minibuild zstd": lambda: time_minibuild(root, Compression.ZSTD),
        "tar | cat": lambda: time_shell(f"{tar}"),
        "tar | pigz -1": lambda: time_shell(f"{tar} | pigz -1 -c"),
        "tar | zstd -3 -T0": lambda: time_shell(f"{tar} | zstd -q -3 -T0 -c"),
    }
    if shutil.which("pigz") is None:
        del rows["tar | pigz -1"]
        print("  (pigz not installed: apt-get install pigz)")
    got = {}
    plain = None
    for key, fn in rows.items():
        got[key] = median_of(runs, fn)
        plain = plain or got[key][3]  # the first row is the plain tar: ratios are against it
        print(f"  {key:20s} {fmt(got[key])}  {mb / got[key][0]:6.0f} MB/s  ratio {plain / got[key][3]:.2f}")
    for ours, theirs in (("minibuild gzip", "tar | pigz -1"), ("minibuild zstd", "tar | zstd -3 -T0"),
                         ("minibuild none", "tar | cat")):
        if theirs in got:
            print(f"  throughput {ours} / {theirs} = {got[theirs][0] / got[ours][0]:.2f}")


def peak_rss_1g(scratch: Path) -> None:
    root = scratch / "onegig"
    root.mkdir()
    try:
        make_big_file(root / "blob", 1 << 30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        secs, out = time_minibuild(root, Compression.GZIP)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"1 GiB file, gzip: {secs:.2f} s {1073.7 / secs:.0f} MB/s; peak RSS before {before / 1024:.0f} MiB,"
              f" after {after / 1024:.0f} MiB (ru_maxrss; includes the earlier runs)")
    finally:
        shutil.rmtree(root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--skip-1g", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[], help="also an existing directory")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="snapbench-", dir=args.scratch))
    try:
        if not args.skip_1g:
            peak_rss_1g(scratch)  # first, so ru_maxrss is not inflated by earlier work
        big = scratch / "big"
        big.mkdir()
        make_big_file(big / "data", 200 * MIB)
        compare("one 200 MiB file", big, args.runs)
        small = scratch / "small"
        small.mkdir()
        make_small_tree(small, 20_000)
        compare("20,000 small files", small, args.runs)
        for tree in args.tree:
            compare(tree, Path(tree), args.runs)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    sys.exit(main())
