"""User namespaces, timed: the four bench cases built as root with --userns=host and
--userns=auto, rootless by the test user, and by `buildah bud` run rootless by the same user.

Usage (as root):  python3 bench/userns_bench.py [--runs N] [--cases small-app run-200mb ...]

Every minibuild side runs the same venv (MINIBUILD_ROOTLESS_VENV, scripts/rootless-setup.sh)
through `runuser -u USER -- env -i ...`. buildah runs as the test user too, `--isolation chroot
--layers`, on a storage of its own under the user's temp HOME (`--root/--runroot`, overlay
driver: no storage.conf needed), its base pulled from the rootless store's OCI layout.
`cold` = a fresh store (storage) holding only base:1.0; `warm` = the same build again (the
build memo off: minibuild's step cache answers, as buildah's layer cache does).
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
from bench.build_bench import CASES, DEFAULT_CASES  # noqa: E402
from bench.rootless_bench import USER, VENV, Side  # noqa: E402

SIDES = ("host", "auto", "rootless", "buildah-rootless")


class MinibuildSide(Side):
    """minibuild as `user`, with extra environment (MINIBUILD_USERNS_MODE)."""

    def __init__(self, user: str, work: Path, label: str, extra: tuple[str, ...] = ()) -> None:
        self.label, self.extra = label, extra
        super().__init__(user, work / label)

    def command(self, *args: str, memo: bool = True) -> list[str]:
        """Side.command with the extra variables after `env -i`."""
        argv = super().command(*args, memo=memo)
        at = argv.index("-i") + 1
        return argv[:at] + list(self.extra) + argv[at:]

    def build(self, context: Path, cold: bool, base: Path) -> float:
        """Wall seconds of one build (after a fresh store when cold)."""
        if cold:
            self.fresh_store(base)
        return self.timed("build", "-q", str(context), memo=cold)

    def close(self) -> None:
        """End the rootless pause process, if any."""
        recorded = self.home / "store/runtime/userns.pid"
        if recorded.exists():
            try:
                os.kill(int(recorded.read_text().split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass


class BuildahSide:
    """`buildah bud` as the test user on a private storage."""

    def __init__(self, work: Path, base_oci: Path) -> None:
        self.home, self.base_oci = work / "buildah-home", base_oci
        self.home.mkdir()
        shutil.chown(self.home, USER)

    def cli(self, *args: str) -> list[str]:
        """buildah ARGS as the user, on the private storage."""
        env = [f"HOME={self.home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        return ["runuser", "-u", USER, "--", "env", "-i", *env, "buildah",
                "--root", str(self.home / "root"), "--runroot", str(self.home / "run"),
                "--storage-driver", "overlay", *args]

    def fresh(self) -> None:
        """A storage holding only the base, tagged localhost/base:1.0."""
        shutil.rmtree(self.home / "root", ignore_errors=True)
        shutil.rmtree(self.home / "run", ignore_errors=True)
        pulled = subprocess.run(self.cli("pull", "-q", f"oci:{self.base_oci}:base:1.0"),
                                check=True, capture_output=True, text=True, cwd=self.home)
        image = pulled.stdout.strip().splitlines()[-1]
        subprocess.run(self.cli("tag", image, "localhost/base:1.0"), check=True,
                       capture_output=True)

    def build(self, context: Path, cold: bool, base: Path) -> float:
        """Wall seconds of one `bud --layers` (after a fresh storage when cold)."""
        if cold:
            self.fresh()
        start = time.perf_counter()
        subprocess.run(self.cli("bud", "--isolation", "chroot", "--layers", "--pull=never",
                                "-f", str(context / "Buildfile"), "-t", "bench:1", str(context)),
                       check=True, capture_output=True)
        return time.perf_counter() - start

    def close(self) -> None:
        """Nothing runs between builds."""


def median(values: list[float]) -> str:
    """`median [min-max]`."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def bench_case(name: str, sides: dict, work: Path, base: Path, runs: int) -> list[str]:
    """One row per mode: every side's median, and the ratios to --userns=host."""
    context = work / "contexts" / name
    CASES[name].make(context)
    subprocess.run(["chown", "-R", USER, str(work / "contexts")], check=True)
    rows = []
    for mode in ("cold", "warm"):
        times: dict[str, list[float]] = {label: [] for label in sides}
        for _ in range(runs):
            for label, side in sides.items():
                if mode == "warm" and not times[label]:
                    side.build(context, True, base)  # the build the warm ones repeat
                times[label].append(side.build(context, mode == "cold", base))
        host = statistics.median(times["host"])
        cells = " | ".join(median(times[label]) for label in sides)
        ratios = " | ".join(f"{statistics.median(times[label]) / host:.2f}"
                            for label in sides if label != "host")
        rows.append(f"| {name} | {mode} | {cells} | {ratios} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    """Every case, every side; a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    args = ap.parse_args()
    if os.geteuid() != 0 or not (VENV / "bin/python").exists():
        sys.exit(f"run as root, after scripts/rootless-setup.sh made {VENV}")
    work = Path(tempfile.mkdtemp(prefix="minibuild-userns-bench-"))
    sides: dict = {}
    try:
        os.chmod(work, 0o755)
        base = work / "base"
        shutil.copytree(REPO / "sample_images/base", base, dirs_exist_ok=True)
        (base / "rootfs/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", base / "rootfs/bin/busybox")
        subprocess.run(["chown", "-R", USER, str(base)], check=True)
        for label in SIDES[:3]:
            (work / label).mkdir()
            os.chmod(work / label, 0o755)
        sides["host"] = MinibuildSide("root", work, "host")
        sides["auto"] = MinibuildSide("root", work, "auto", ("MINIBUILD_USERNS_MODE=auto",))
        sides["rootless"] = MinibuildSide(USER, work, "rootless")
        sides["rootless"].fresh_store(base)
        sides["buildah-rootless"] = BuildahSide(work, sides["rootless"].home / "store/oci")
        header = " | ".join(SIDES)
        print(f"| case | mode | {header} (s, median [min-max]) | auto/host | rootless/host "
              f"| buildah-rootless/host |\n| --- | --- |{' --- |' * (len(SIDES) + 3)}")
        for name in args.cases:
            bench_case(name, sides, work, base, args.runs)
    finally:
        for side in sides.values():
            side.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
