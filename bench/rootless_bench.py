"""Rootless vs root: the same builds timed as an unprivileged user and as root; prints figures.

Usage (as root):  python3 bench/rootless_bench.py [--runs N] [--cases small-app many-runs run-200mb]

Both sides run the same interpreter and install (the venv of scripts/rootless-setup.sh,
MINIBUILD_ROOTLESS_VENV) through `runuser -u USER -- env -i ...`, so the only difference is
rootless minibuild's user namespace (joining it at start-up, userxattr overlay mounts, /dev
binds). `cold` = a fresh store holding only base:1.0; `warm-engine` = the same build again
with the build memo off (the step cache answers); `images` = a command's start-up. The first
rootless command of a fresh store also starts the pause process: timed apart (`userns start`).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.build_bench import case_big_run, case_many_runs, case_small  # noqa: E402

USER = os.environ.get("MINIBUILD_ROOTLESS_USER", "minibuild-rootless")
VENV = Path(os.environ.get("MINIBUILD_ROOTLESS_VENV", "/opt/minibuild-rootless"))
CASES = {"small-app": case_small, "many-runs": case_many_runs, "run-200mb": case_big_run}


class Side:
    """minibuild as one user, with its own HOME (and so its own default store) under `work`."""

    def __init__(self, user: str, work: Path) -> None:
        self.user, self.home = user, work / f"home-{user}"
        self.home.mkdir()
        entry = pwd.getpwnam(user)
        os.chown(self.home, entry.pw_uid, entry.pw_gid)

    def command(self, *args: str, memo: bool = True) -> list[str]:
        """The argv running `minibuild ARGS` as this user, store under its HOME."""
        env = [f"HOME={self.home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
               f"MINIBUILD_ROOT={self.home}/store"] + ([] if memo else ["MINIBUILD_MEMO=0"])
        return ["runuser", "-u", self.user, "--", "env", "-i", *env,
                str(VENV / "bin/python"), "-m", "minibuild", *args]

    def timed(self, *args: str, memo: bool = True) -> float:
        """Wall seconds of one command (which must succeed)."""
        start = time.perf_counter()
        subprocess.run(self.command(*args, memo=memo), check=True, capture_output=True)
        return time.perf_counter() - start

    def fresh_store(self, base: Path) -> None:
        """Remove the store (ending a pause process recorded in it) and build base:1.0 again."""
        recorded = self.home / "store/runtime/userns.pid"
        if recorded.exists():
            try:
                os.kill(int(recorded.read_text().split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.home / "store", ignore_errors=True)
        self.timed("build", "-q", "-t", "base:1.0", str(base))


def median(values: list[float]) -> str:
    """`median s [min-max]`."""
    return f"{statistics.median(values):.3f} s [{min(values):.3f}-{max(values):.3f}]"


def bench_case(name: str, sides: dict[str, Side], work: Path, base: Path, runs: int) -> list[str]:
    """Rows for one case: cold and warm-engine, root and rootless, and the ratio."""
    context = work / name
    CASES[name](context)
    shutil.chown(context, USER)
    for path in context.rglob("*"):
        shutil.chown(path, USER)
    rows = []
    for mode in ("cold", "warm-engine"):
        times: dict[str, list[float]] = {"root": [], "rootless": []}
        for _ in range(runs):
            for label, side in sides.items():
                if mode == "cold":
                    side.fresh_store(base)
                times[label].append(side.timed("build", "-q", str(context), memo=mode == "cold"))
        ratio = statistics.median(times["rootless"]) / statistics.median(times["root"])
        rows.append(f"| {name} | {mode} | {median(times['root'])} | {median(times['rootless'])} "
                    f"| {ratio:.2f} |")
    return rows


def startup_rows(sides: dict[str, Side], runs: int) -> list[str]:
    """`images` (start-up, joining the namespace) and the first command of a fresh namespace."""
    times = {label: [side.timed("images") for _ in range(runs)] for label, side in sides.items()}
    starts = []
    for _ in range(runs):
        recorded = sides["rootless"].home / "store/runtime/userns.pid"
        os.kill(int(recorded.read_text().split()[0]), signal.SIGKILL)
        time.sleep(0.05)
        starts.append(sides["rootless"].timed("images"))
    ratio = statistics.median(times["rootless"]) / statistics.median(times["root"])
    return [f"| images | start-up | {median(times['root'])} | {median(times['rootless'])} "
            f"| {ratio:.2f} |",
            f"| images | userns start | - | {median(starts)} | - |"]


def main() -> None:
    """Time every case both ways and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = ap.parse_args()
    if os.geteuid() != 0 or not (VENV / "bin/python").exists():
        sys.exit(f"run as root, after scripts/rootless-setup.sh made {VENV}")
    work = Path(tempfile.mkdtemp(prefix="minibuild-rootless-bench-"))
    try:
        os.chmod(work, 0o755)
        base = work / "base"
        shutil.copytree(REPO / "sample_images/base", base, dirs_exist_ok=True)
        (base / "rootfs/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", base / "rootfs/bin/busybox")
        sides = {"root": Side("root", work), "rootless": Side(USER, work)}
        rows = ["| case | mode | root median [min-max] | rootless median [min-max] | ratio |",
                "| --- | --- | --- | --- | --- |"]
        for name in args.cases:
            rows += bench_case(name, sides, work, base, args.runs)
        rows += startup_rows(sides, args.runs)
        print("\n".join(rows))
    finally:
        sides_store = work / f"home-{USER}/store/runtime/userns.pid"
        if sides_store.exists():
            try:
                os.kill(int(sides_store.read_text().split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
