"""Network bench: what the private network costs a build; prints figures, asserts nothing.

Usage (as root):  python3 bench/network_bench.py [--runs N] [--keep]

Cold builds (a fresh copy of a store holding the busybox base, no cache hit) of a 1-RUN and a
60-RUN Buildfile with `--network default` (a private netns held by a forked holder, with
slirp4netns), `host` and `none` (a holder, no slirp4netns), modes interleaved within each run.
Then, in-process: the set-up and tear-down of one namespace (sandbox.network.Networks), and one
`busybox true` step through Sandbox.run in each mode (the namespaces already made).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import (Minibuild, fresh_groups, run_measured, run_quiet,  # noqa: E402
                         runs_buildfile, write)

MODES = ("default", "host", "none")
CASES = {"1-run": "FROM base:1.0\nRUN echo one > /one.txt\n", "60-runs": runs_buildfile(60)}


def time_builds(mb: Minibuild, work: Path, runs: int) -> dict[tuple[str, str], list[float]]:
    """Seconds of each cold build, by (case, mode)."""
    times: dict[tuple[str, str], list[float]] = {}
    for case, text in CASES.items():
        context = work / f"ctx-{case}"
        write(context / "Buildfile", text)
        for run in range(runs):
            for mode in MODES:
                store = work / f"store-{case}-{mode}-{run}"
                run_quiet(["cp", "-a", str(mb.template), str(store)], mb.log)
                cmd = mb.cli(store, "build", "--progress", "plain", "--network", mode, "-t",
                             "bench:1", str(context))
                sample = run_measured(cmd, mb.log, env=mb.env)
                shutil.rmtree(store, ignore_errors=True)
                if not sample.ok:
                    raise SystemExit(f"build failed: see {mb.log}")
                times.setdefault((case, mode), []).append(sample.seconds)
    return times


def time_namespaces(runs: int) -> dict[str, list[float]]:
    """Milliseconds to make and end one namespace of each private mode, in-process."""
    from minibuild.sandbox.network import Networks

    found: dict[str, list[float]] = {}
    for _ in range(runs):
        for mode in ("default", "none"):
            start = time.perf_counter()
            with Networks() as networks:
                networks.netns(mode)
                made = time.perf_counter()
            found.setdefault(f"{mode}: make", []).append((made - start) * 1000)
            found.setdefault(f"{mode}: end", []).append((time.perf_counter() - made) * 1000)
    return found


def time_steps(work: Path, steps: int) -> dict[str, list[float]]:
    """Milliseconds of one `busybox true` step through Sandbox.run, by mode, with the namespaces
    of a build (made before the first timed step, as a build's first RUN makes them)."""
    from minibuild.sandbox.network import Networks
    from minibuild.sandbox.sandbox import Process, RootFS, Sandbox

    layer = work / "steps" / "layer"
    (layer / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", layer / "bin" / "busybox")
    found: dict[str, list[float]] = {}
    with Networks() as networks:
        sandbox = Sandbox(networks=networks)
        for mode in MODES:
            networks.netns(mode)
        for i in range(steps):
            for mode in MODES:
                dirs = [work / "steps" / f"{mode}{i}" / d for d in ("upper", "work", "merged")]
                for d in dirs:
                    d.mkdir(parents=True)
                start = time.perf_counter()
                sandbox.run(RootFS((layer,), *dirs), Process(("/bin/busybox", "true"),
                                                             network=mode), lambda b: None)
                found.setdefault(f"step, {mode}", []).append((time.perf_counter() - start) * 1000)
    return found


def report(times: dict[tuple[str, str], list[float]], spaces: dict[str, list[float]]) -> None:
    """Medians (min-max) as markdown tables."""
    print("| case | " + " | ".join(f"--network {m}" for m in MODES) + " | default - host |")
    print("|---|" + "---|" * (len(MODES) + 1))
    for case in CASES:
        cells = [f"{statistics.median(times[case, m]):.3f} s "
                 f"({min(times[case, m]):.3f}-{max(times[case, m]):.3f})" for m in MODES]
        extra = statistics.median(times[case, "default"]) - statistics.median(times[case, "host"])
        print(f"| {case} | " + " | ".join(cells) + f" | {extra * 1000:+.0f} ms |")
    per_step = {m: (statistics.median(times["60-runs", m]) - statistics.median(times["1-run", m]))
                / 60 * 1000 for m in MODES}
    print("\nper extra RUN step: " + ", ".join(f"{m} {v:.1f} ms" for m, v in per_step.items()))
    print("\n| in-process | median | min-max |\n|---|---|---|")
    for name, values in spaces.items():
        low, high = min(values), max(values)
        print(f"| {name} | {statistics.median(values):.1f} ms | {low:.1f}-{high:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netbench-"))
    try:
        fresh_groups(work)
        mb = Minibuild(work, "zstd")
        mb.make_base()
        times = time_builds(mb, work, args.runs)
        report(times, {**time_namespaces(max(args.runs, 10)), **time_steps(work, 60)})
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
