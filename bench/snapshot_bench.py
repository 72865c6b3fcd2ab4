"""Snapshot speed and memory vs `tar -cf - DIR | zstd -3 -T0`; prints figures, asserts nothing.

Usage: python3 bench/snapshot_bench.py [--scratch DIR] [--skip-1g]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minibuild.snapshot import Compression, write_layer

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


def time_minibuild(root: Path, compression: Compression) -> tuple[float, int]:
    sink = HashingNull()
    t = time.perf_counter()
    write_layer(root, sink, compression=compression)
    return time.perf_counter() - t, sink.size


def time_shell(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, executable="/bin/bash")
    return time.perf_counter() - t


def compare(label: str, root: Path) -> None:
    size = tree_bytes(root)
    mb = size / 1e6
    print(f"{label}: {mb:.0f} MB of file content (page cache warm)")
    time_minibuild(root, Compression.NONE)  # warm the page cache for everyone
    for comp in (Compression.NONE, Compression.ZSTD, Compression.GZIP):
        secs, out = time_minibuild(root, comp)
        print(f"  minibuild {comp.value:5s} {secs:6.2f} s  {mb / secs:7.0f} MB/s  blob {out / 1e6:.0f} MB")
    parent, name = root.parent, root.name
    tar_s = time_shell(f"tar -C {parent} -cf - {name} | cat > /dev/null")
    zst_s = time_shell(f"tar -C {parent} -cf - {name} | zstd -q -3 -T0 -c > /dev/null")
    sha_s = time_shell(f"tar -C {parent} -cf - {name} | tee >(sha256sum >/dev/null) | zstd -q -3 -T0 -c > /dev/null")
    mine_none, _ = time_minibuild(root, Compression.NONE)
    mine_zstd, _ = time_minibuild(root, Compression.ZSTD)
    print(f"  tar | cat          {tar_s:6.2f} s  {mb / tar_s:7.0f} MB/s   ratio minibuild(none)/tar = {mine_none / tar_s:.2f}")
    print(f"  tar | zstd -3 -T0  {zst_s:6.2f} s  {mb / zst_s:7.0f} MB/s   ratio minibuild(zstd)/tar|zstd = {mine_zstd / zst_s:.2f}")
    print(f"  tar | tee sha256sum | zstd {sha_s:6.2f} s (the shell pipeline also hashing)")


def peak_rss_1g(scratch: Path) -> None:
    root = scratch / "onegig"
    root.mkdir()
    try:
        make_big_file(root / "blob", 1 << 30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        secs, out = time_minibuild(root, Compression.ZSTD)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"1 GiB file, zstd: {secs:.2f} s {1073.7 / secs:.0f} MB/s; peak RSS before {before / 1024:.0f} MiB,"
              f" after {after / 1024:.0f} MiB (ru_maxrss; includes the earlier runs)")
    finally:
        shutil.rmtree(root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--skip-1g", action="store_true")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="snapbench-", dir=args.scratch))
    try:
        if not args.skip_1g:
            peak_rss_1g(scratch)  # first, so ru_maxrss is not inflated by earlier work
        big = scratch / "big"
        big.mkdir()
        make_big_file(big / "data", 200 * MIB)
        compare("one 200 MiB file", big)
        small = scratch / "small"
        small.mkdir()
        make_small_tree(small, 20_000)
        compare("20,000 small files", small)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    sys.exit(main())
