"""Registry build cache: a cold build on runner B (an empty store) without and with --cache-from,
after runner A exported; buildah's --cache-to/--cache-from on the same local docker-registry.
Prints figures, asserts nothing.

Usage (as root):  python3 bench/cache_bench.py [--runs 3] [--no-buildah]

Everything lives in one temp dir, removed at the end: the registry's storage, the minibuild stores,
buildah's storage (--root/--runroot, vfs) and the context. Two Buildfiles: "data" (RUN steps that
write 64 MiB quickly) and "compute" (RUN steps that work a few seconds and write little, as a
compiler or a test run does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import make_base_context  # noqa: E402
from tests.registry_server import registry_server  # noqa: E402

# "data": steps that write a lot quickly (the cache moves 64 MiB that took ~1 s to make);
# "compute": steps that think a long time and write little (a compiler, a test run).
BUILDFILES = {
    "data": """FROM {base}
RUN dd if=/dev/urandom of=/blob bs=1M count=64 2>/dev/null
RUN i=0; while [ $i -lt 300 ]; do echo $i >> /count; i=$((i+1)); /bin/true; done
COPY app.txt /app.txt
RUN cat /app.txt /count | wc -l > /lines
""",
    "compute": """FROM {base}
RUN for i in 1 2 3 4 5 6; do dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum; done > /sums
RUN i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i > /loop
COPY app.txt /app.txt
RUN cat /app.txt /sums /loop | wc -l > /lines
""",
}


def minibuild(root: Path, *args: str) -> float:
    env = {**os.environ, "MINIBUILD_ROOT": str(root), "MINIBUILD_REGISTRIES_CONF": os.devnull,
           "MINIBUILD_MEMO": "0"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "minibuild", *args], cwd=REPO, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def buildah(storage: Path, *args: str) -> float:
    base = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "vfs"]
    started = time.perf_counter()
    subprocess.run([*base, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def buildah_reset(storage: Path) -> None:
    subprocess.run(["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
                    "--storage-driver", "vfs", "rm", "--all"], capture_output=True)
    subprocess.run(["umount", "-R", str(storage / "root")], capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s [{min(values):.2f}-{max(values):.2f}]"


def run(work: Path, runs: int, with_buildah: bool) -> None:
    base_store = work / "base-store"
    minibuild(base_store, "build", "--progress", "plain", "-t", "base:1.0", str(_base_context(work)))
    with registry_server(work / "registry") as reg:
        base = f"{reg.host}/base:1.0"
        minibuild(base_store, "push", "-q", "base:1.0", base)
        for name, text in BUILDFILES.items():
            case = work / name
            ctx = case / "ctx"
            ctx.mkdir(parents=True)
            (ctx / "Buildfile").write_text(text.format(base=base))
            (ctx / "Dockerfile").write_text(text.format(base=base))
            (ctx / "app.txt").write_text("app\n")
            _case(case, ctx, reg.host, name, runs, with_buildah)


def _case(case: Path, ctx: Path, host: str, name: str, runs: int, with_buildah: bool) -> None:
    cache = f"type=registry,ref={host}/{name}-cache"
    exported = minibuild(case / "runner-a", "build", "--cache-to", cache, str(ctx))
    print(f"{name}: runner A, cold build + export {exported:.2f} s; median [min-max] of {runs}")
    rows: dict[str, list[float]] = {"minibuild B cold": [], "minibuild B --cache-from": []}
    for n in range(runs):
        rows["minibuild B cold"].append(minibuild(case / f"cold-{n}", "build", str(ctx)))
        rows["minibuild B --cache-from"].append(
            minibuild(case / f"warm-{n}", "build", "--cache-from", cache, str(ctx)))
    if with_buildah and shutil.which("buildah"):
        _buildah_rows(case, ctx, f"{host}/{name}-bcache", runs, rows)
    for key, values in rows.items():
        print(f"  {key:28s} {median(values)}")


def _buildah_rows(work: Path, ctx: Path, repo: str, runs: int, rows: dict) -> None:
    common = ["bud", "--isolation", "chroot", "--layers", "--tls-verify=false", "-f", str(ctx / "Dockerfile")]
    seed = work / "buildah-a"
    buildah(seed, *common, "--cache-to", repo, str(ctx))
    buildah_reset(seed)
    rows["buildah B cold"], rows["buildah B --cache-from"] = [], []
    for n in range(runs):
        cold, warm = work / f"bcold-{n}", work / f"bwarm-{n}"
        rows["buildah B cold"].append(buildah(cold, *common, str(ctx)))
        buildah_reset(cold)
        rows["buildah B --cache-from"].append(buildah(warm, *common, "--cache-from", repo, str(ctx)))
        buildah_reset(warm)


def _base_context(work: Path) -> Path:
    return make_base_context(work / "base-ctx")  # the sample base: FROM scratch + busybox


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-buildah", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cachebench-"))
    try:
        run(work, args.runs, not args.no_buildah)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
