"""Kill test: SIGKILL a build at random moments; the store must stay usable and exact.

    python3 tests/kill_test.py [COUNT] [--seed N] [--keep]

For each of COUNT rounds (50 by default): start a build (SOURCE_DATE_EPOCH set, --no-cache so
every round does real work), SIGKILL it after a random delay within the length of an
uninterrupted build, then check that
  - after the next minibuild command (`fsck`), no overlay mount and no scratch dir of the dead
    build is left, and no process runs with its root inside the store;
  - `fsck` reports no error;
  - a rebuild succeeds with the same image ID as an uninterrupted build.
Needs root (overlayfs). CI runs a few rounds through tests/integration/test_reliability.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conftest import integration_skip_reason, make_base_context  # noqa: E402

EPOCH = "1700000000"
BUILDFILE = """FROM base:1.0
ENV GREETING=hello
WORKDIR /app
COPY data/ /app/data/
RUN i=0; while [ $i -lt 300 ]; do echo "$i $GREETING" > /app/f$i; i=$((i+1)); done
RUN dd if=/dev/zero of=/app/big bs=1048576 count=8 2>/dev/null && sleep 0.3
RUN rm /app/f1 && mkdir -p /var/x && echo done > /var/x/done
CMD ["cat", "/app/f0"]
"""


@dataclass(frozen=True)
class Round:
    """What one kill did and what was wrong after it (empty: all good)."""

    delay: float
    in_step: bool  # a process was running inside the store (a RUN) when the kill landed
    problems: tuple[str, ...]


def minibuild(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI on a store."""
    env = {**os.environ, "MINIBUILD_ROOT": str(root), "SOURCE_DATE_EPOCH": EPOCH}
    proc = subprocess.run([sys.executable, "-m", "minibuild", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"minibuild {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def build_args(context: Path, *extra: str) -> list[str]:
    """The build every round runs."""
    return ["build", "-q", "--progress", "plain", "-t", "kill:1", *extra, str(context)]


def make_context(directory: Path) -> Path:
    """The Buildfile and a small data dir."""
    (directory / "data" / "sub").mkdir(parents=True)
    (directory / "Buildfile").write_text(BUILDFILE)
    for i in range(20):
        (directory / "data" / "sub" / f"file{i}").write_text(f"data {i}\n" * 50)
    return directory


def processes_rooted_in(root: Path) -> list[int]:
    """PIDs whose root directory lies inside the store (a step's processes)."""
    found, prefix = [], str(root.resolve()) + "/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (os.readlink(entry / "root") + "/").startswith(prefix) or \
                        _pivoted_into(entry, prefix):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _pivoted_into(proc: Path, prefix: str) -> bool:
    """Whether a process's root is a step's overlay with its upper dir in the store: after
    pivot_root its root shows as `/` (of its own mount namespace), so look at the mount."""
    for line in (proc / "mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            return fields[3] == "/" and f"upperdir={prefix}" in line
    return False


def mounts_under(root: Path) -> list[str]:
    """Mount points of this (the host's) namespace inside the store."""
    prefix = str(root.resolve())
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def wait_gone(root: Path, seconds: float = 10.0) -> list[int]:
    """Step processes still alive after waiting a little for the kernel to reap them."""
    deadline = time.monotonic() + seconds
    while (left := processes_rooted_in(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def one_round(root: Path, context: Path, expected: str, delay: float) -> Round:
    """Start, kill after `delay`, then check the store and rebuild."""
    env = {**os.environ, "MINIBUILD_ROOT": str(root), "SOURCE_DATE_EPOCH": EPOCH}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild",
                             *build_args(context, "--no-cache")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    in_step = bool(processes_rooted_in(root))
    proc.kill()
    proc.wait()
    problems = []
    if left := wait_gone(root):
        problems.append(f"step processes outlived the build: {left}")
    report = minibuild(root, "fsck", "--format", "json", check=False)
    try:
        data = json.loads(report.stdout)
        errors = [f"{f['where']}: {f['message']}" for f in data["findings"] if f["severity"] == "error"]
    except ValueError:
        errors = [f"fsck printed no JSON (exit {report.returncode}): {report.stderr.strip()}"]
    problems += [f"fsck: {e}" for e in errors]
    if report.returncode != (1 if errors else 0):
        problems.append(f"fsck exited {report.returncode}")
    if mounts := mounts_under(root):
        problems.append(f"mounts left: {mounts}")
    if leftovers := sorted(p.name for p in (root / "run").iterdir()):
        problems.append(f"scratch left in run/: {leftovers}")
    problems += rebuild_problems(root, context, expected)
    return Round(delay, in_step, tuple(problems))


def rebuild_problems(root: Path, context: Path, expected: str) -> list[str]:
    """Rebuild (with the cache the killed builds left); the digest must be the reference's."""
    rebuilt = minibuild(root, *build_args(context), check=False)
    if rebuilt.returncode != 0:
        return [f"rebuild failed ({rebuilt.returncode}): {rebuilt.stderr.strip()}"]
    if rebuilt.stdout.strip() != expected:
        return [f"rebuild gave {rebuilt.stdout.strip()}, an uninterrupted build {expected}"]
    return []


def prepare(workdir: Path) -> tuple[Path, Path, str, float]:
    """A store with base:1.0, the context, the reference digest and its build time."""
    base_root, root = workdir / "base-store", workdir / "store"
    minibuild(base_root, "build", "-q", "-t", "base:1.0",
              str(make_base_context(workdir / "base-context")))
    context = make_context(workdir / "context")
    shutil.copytree(base_root, root, symlinks=True)
    started = time.monotonic()
    expected = minibuild(base_root, *build_args(context, "--no-cache")).stdout.strip()
    return root, context, expected, time.monotonic() - started


def run(count: int, seed: int, workdir: Path) -> list[Round]:
    """`count` rounds in a store under `workdir`; every round's result."""
    root, context, expected, seconds = prepare(workdir)
    rng = random.Random(seed)
    return [one_round(root, context, expected, rng.uniform(0.0, seconds * 1.1))
            for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    """Command line: print one line per failed round and a summary; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if reason := integration_skip_reason():
        print(f"kill test skipped: {reason}", file=sys.stderr)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="minibuild-kill-"))
    try:
        rounds = run(args.count, args.seed, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in rounds if r.problems]
    for r in failed:
        print(f"kill after {r.delay:.2f}s: " + "; ".join(r.problems))
    print(f"{len(rounds)} kills (seed {args.seed}), {sum(r.in_step for r in rounds)} during a RUN: "
          f"{len(failed)} left a problem")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
