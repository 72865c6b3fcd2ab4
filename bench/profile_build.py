"""Profile one cold minibuild build of a build_bench case with cProfile, parent and forked helpers.

Usage (as root):  python3 bench/profile_build.py CASE [--top N] [--sort tottime|cumulative] [--keep]

The build runs in this process (cli main) under cProfile. COPY/ADD/WORKDIR work runs in a forked
helper (Sandbox.call) that the parent's profiler cannot see, so Sandbox.call is wrapped: the
helper profiles its fn and marshals the stats into a file opened *before* the fork (the helper is
chrooted into the overlay by then, and must not write a file there).
"""

from __future__ import annotations

import argparse
import cProfile
import marshal
import pstats
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench  # noqa: E402


def wrap_sandbox_call(dumps: list[Path], scratch: Path) -> None:
    """Make every Sandbox.call profile its fn in the helper and leave the stats in a new file."""
    from minibuild.sandbox import sandbox

    original = sandbox.Sandbox.call

    def call(self, rootfs, fn: Callable[[], None], **kwargs) -> None:
        path = scratch / f"helper-{len(dumps)}.prof"
        dumps.append(path)
        sink = open(path, "wb")  # noqa: SIM115 - inherited by the fork, closed below

        def profiled() -> None:
            prof = cProfile.Profile()
            prof.enable()
            try:
                fn()
            finally:
                prof.disable()
                prof.create_stats()
                marshal.dump(prof.stats, sink)
                sink.flush()

        try:
            return original(self, rootfs, profiled, **kwargs)
        finally:
            sink.close()

    sandbox.Sandbox.call = call


def run_cli(args: list[str]) -> int:
    """Run `minibuild ARGS` in this process; the exit code."""
    from minibuild.cli.app import main

    saved = sys.argv
    sys.argv = ["minibuild", *args]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0


def report(title: str, stats: pstats.Stats, sort: str, top: int) -> None:
    """Print the top entries of one profile."""
    print(f"\n===== {title}: total {stats.total_tt:.2f} s of profiled CPU+wait time =====")
    stats.strip_dirs().sort_stats(sort).print_stats(top)


def main() -> int:
    """Build the base, then profile one build of the chosen case."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(build_bench.CASES))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    ap.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "none"])
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (and its .prof files)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profbuild-"))
    try:
        mb = build_bench.Minibuild(work, args.compression)
        mb.make_base()
        ctx = work / "ctx"
        build_bench.CASES[args.case].make(ctx)
        dumps: list[Path] = []
        wrap_sandbox_call(dumps, work)
        prof = cProfile.Profile()
        prof.enable()
        status = run_cli(["--root", str(mb.template), "build", "--progress", "plain", "--compression",
                          args.compression, "-t", "prof:1", str(ctx)])
        prof.disable()
        prof.dump_stats(work / "parent.prof")
        report("parent (minibuild process)", pstats.Stats(prof), args.sort, args.top)
        for path in dumps:
            if path.stat().st_size:
                report(f"helper {path.name} (Sandbox.call fn)", pstats.Stats(str(path)), args.sort, args.top)
        return status
    finally:
        build_bench.unmount_under(work, work / "cleanup.log")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
