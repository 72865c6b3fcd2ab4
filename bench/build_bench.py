"""Cold-build benchmark: minibuild vs buildah on the same busybox base; prints figures, asserts nothing.

Usage (as root):  python3 bench/build_bench.py [--runs N] [--cases NAME ...] [--json out.json]
                  [--compression zstd|gzip|none] [--no-snapshot] [--keep]

Everything lives in one temp dir that is removed at the end: the minibuild stores (`--root`), the
buildah storage (`--root/--runroot`, overlay driver, so the user's default storage is never
touched) and the generated build contexts. Each run uses fresh stores: no cache hits for either.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
BASE_CONTEXT = REPO / "sample_images" / "base"
BASE_REF = "base:1.0"  # minibuild: a local name; buildah: resolves to localhost/base:1.0 (tagged on import)
TARGET_RATIO = 0.7


# ---------------------------------------------------------------- measuring one process


@dataclass
class Sample:
    """One timed build: wall seconds and the peak RSS (KiB) that wait4 reports for the process tree."""

    seconds: float
    maxrss_kib: int
    ok: bool


def run_measured(cmd: list[str], log: Path, cwd: Optional[Path] = None) -> Sample:
    """Run `cmd` with output to `log`; time it with perf_counter and read ru_maxrss from os.wait4.

    ru_maxrss from wait4 is the largest RSS of the child or any descendant it reaped (a maximum,
    not a sum), so the figure is minibuild's own peak unless a RUN step's process was bigger.
    """
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(seconds, usage.ru_maxrss, proc.returncode == 0)


def run_quiet(cmd: list[str], log: Path, check: bool = True) -> bool:
    """Run an untimed helper command, appending its output to `log`."""
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if check and rc != 0:
        raise RuntimeError(f"command failed ({rc}): {' '.join(cmd)}; see {log}")
    return rc == 0


# ---------------------------------------------------------------- the two builders


class Minibuild:
    """minibuild through its CLI, one fresh store per build, copied from a template with the base."""

    def __init__(self, work: Path, compression: str) -> None:
        self.work = work
        self.compression = compression
        self.template = work / "mb-template"
        self.log = work / "minibuild.log"

    def cli(self, root: Path, *args: str) -> list[str]:
        """The command line for `minibuild --root ROOT ARGS`."""
        return [sys.executable, "-m", "minibuild", "--root", str(root), *args]

    def make_base(self, compression: str = "zstd") -> Path:
        """Build the busybox base into the template store as BASE_REF; return the OCI dir."""
        busybox = BASE_CONTEXT / "rootfs" / "bin" / "busybox"
        if not busybox.exists():
            raise SystemExit(f"missing {busybox}: install -D -m755 /bin/busybox {busybox}")
        run_quiet(self.cli(self.template, "build", "--progress", "plain", "--compression", compression,
                           "-t", BASE_REF, str(BASE_CONTEXT)), self.log)
        return self.template / "oci"

    def build(self, context: Path, run: int) -> Sample:
        """Time one cold build of `context` in a fresh copy of the template store, then drop the store."""
        store = self.work / f"mb-run{run}"
        run_quiet(["cp", "-a", str(self.template), str(store)], self.log)
        try:
            cmd = self.cli(store, "build", "--progress", "plain", "--compression", self.compression,
                           "-t", "bench:1", "-f", str(context / "Buildfile"), str(context))
            return run_measured(cmd, self.log)
        finally:
            shutil.rmtree(store, ignore_errors=True)


class Buildah:
    """buildah bud --isolation chroot --layers on a private storage, recreated for every build."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "bh-root"
        self.runroot = work / "bh-runroot"
        self.log = work / "buildah.log"

    @staticmethod
    def available() -> bool:
        """Whether a buildah binary is on PATH."""
        return shutil.which("buildah") is not None

    @staticmethod
    def version() -> str:
        """`buildah --version`, or "n/a"."""
        if not Buildah.available():
            return "n/a"
        return subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip()

    def cli(self, *args: str) -> list[str]:
        """The command line for buildah on the private storage."""
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", "overlay", *args]

    def import_base(self, oci_dir: Path) -> None:
        """Pull the minibuild base from its OCI layout and name it BASE_REF (untimed)."""
        # A relative path: buildah names the pulled image after the path, and a temp dir name
        # (e.g. "buildbench-ab_c") need not be a valid reference.
        rel = os.path.relpath(oci_dir, self.work)
        out = subprocess.run(self.cli("pull", "-q", f"oci:{rel}:{BASE_REF}"), cwd=self.work,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        with open(self.log, "a") as f:
            f.write(out.stdout + out.stderr)
        if out.returncode != 0:
            raise RuntimeError(f"buildah pull oci:{oci_dir}:{BASE_REF} failed: {out.stderr.strip()}")
        image_id = out.stdout.strip().splitlines()[-1]
        run_quiet(self.cli("tag", image_id, "localhost/" + BASE_REF), self.log)

    def build(self, context: Path, base_oci: Path) -> Sample:
        """Time one cold `buildah bud` on a fresh storage that holds only the base."""
        self.reset()
        try:
            self.import_base(base_oci)
            cmd = self.cli("bud", "--isolation", "chroot", "--layers", "--pull=never",
                           "-f", str(context / "Buildfile"), "-t", "bench:1", str(context))
            return run_measured(cmd, self.log)
        finally:
            self.reset()

    def reset(self) -> None:
        """Remove buildah's containers and images, unmount leftovers, delete the storage."""
        if self.root.exists():
            run_quiet(self.cli("rm", "--all"), self.log, check=False)
            run_quiet(self.cli("rmi", "--all", "-f"), self.log, check=False)
        unmount_under(self.work, self.log)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below `top`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(top)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_under(top: Path, log: Path) -> None:
    """Unmount anything left below `top` (never by process name; lazily if busy)."""
    for point in mounts_under(top):
        if not run_quiet(["umount", point], log, check=False):
            run_quiet(["umount", "-l", point], log, check=False)


# ---------------------------------------------------------------- the cases


def write(path: Path, text: str | bytes) -> None:
    """Write a file, creating its parent dirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def case_small(ctx: Path) -> None:
    """Small app: COPY a few files, RUN echo into a file, ENV, WORKDIR, CMD."""
    write(ctx / "app" / "main.sh", "#!/bin/sh\necho \"hello from $APP_NAME\"\n")
    write(ctx / "app" / "config.ini", "[app]\nname=bench\nlevel=3\n")
    write(ctx / "app" / "README", "A tiny app for the build benchmark.\n")
    write(ctx / "app" / "lib" / "util.sh", "say() { echo \"$@\"; }\n")
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
ENV APP_NAME=bench APP_HOME=/opt/app
WORKDIR /opt/app
COPY app/ /opt/app/
RUN echo "built" > /opt/app/BUILD_INFO && chmod +x /opt/app/main.sh
CMD ["/opt/app/main.sh"]
""")


def case_big_run(ctx: Path) -> None:
    """One RUN writing 200 MB of random data."""
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
RUN dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null
CMD ["sh"]
""")


def case_many_files(ctx: Path, count: int = 20_000) -> None:
    """COPY of `count` small files (1-4 KB, nested dirs), then a RUN touching ten of them."""
    for i in range(count):
        rel = Path(f"d{i % 20:02d}") / f"e{(i // 20) % 25:02d}" / f"f{i:05d}.txt"
        size = 1024 + (i * 7919) % 3073  # 1..4 KiB, spread deterministically
        line = f"file {i} of the many-files case; some text to fill the file\n".encode()
        write(ctx / "src" / rel, (line * (size // len(line) + 1))[:size])
    touched = " ".join(f"/src/d{i % 20:02d}/e{(i // 20) % 25:02d}/f{i:05d}.txt" for i in range(0, count, count // 10))
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
COPY src/ /src/
RUN touch {touched}
CMD ["sh"]
""")


def case_many_runs(ctx: Path, steps: int = 60) -> None:
    """`steps` RUN steps, each writing one small file."""
    runs = "".join(f"RUN echo step {i} > /steps/s{i:02d}.txt\n" for i in range(steps))
    write(ctx / "Buildfile", f"FROM {BASE_REF}\nRUN mkdir /steps\n{runs}CMD [\"sh\"]\n")


CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "small-app": ("COPY 4 files, RUN echo, ENV, WORKDIR, CMD", case_small),
    "run-200mb": ("RUN dd 200 MB of /dev/urandom", case_big_run),
    "copy-20k": ("COPY 20,000 files of 1-4 KB, RUN touch 10", case_many_files),
    "60-runs": ("61 RUN steps, each writes a small file", case_many_runs),
}


# ---------------------------------------------------------------- results


@dataclass
class CaseResult:
    """All samples of one case for both tools."""

    name: str
    description: str
    loadavg: list[float] = field(default_factory=list)
    minibuild: list[Sample] = field(default_factory=list)
    buildah: list[Sample] = field(default_factory=list)


def spread(samples: list[Sample]) -> Optional[tuple[float, float, float]]:
    """(median, min, max) of the successful samples' seconds, or None."""
    secs = [s.seconds for s in samples if s.ok]
    if not secs:
        return None
    return statistics.median(secs), min(secs), max(secs)


def fmt_spread(samples: list[Sample]) -> str:
    """"1.23 s [1.20-1.30]", "FAIL" or "n/a"."""
    if not samples:
        return "n/a"
    s = spread(samples)
    if s is None:
        return "FAIL"
    failed = sum(not x.ok for x in samples)
    note = f" ({failed} failed)" if failed else ""
    return f"{s[0]:.2f} s [{s[1]:.2f}-{s[2]:.2f}]{note}"


def ratio(result: CaseResult) -> Optional[float]:
    """minibuild median / buildah median."""
    a, b = spread(result.minibuild), spread(result.buildah)
    return a[0] / b[0] if a and b else None


def fmt_rss(samples: list[Sample]) -> str:
    """The largest peak RSS over the runs, in MiB."""
    ok = [s.maxrss_kib for s in samples if s.ok]
    return f"{max(ok) / 1024:.0f} MiB" if ok else "n/a"


def table(results: list[CaseResult]) -> str:
    """A Markdown table: case, both tools' median [min-max], ratio vs target, peak RSS of each."""
    head = ["case", "minibuild median [min-max]", "buildah median [min-max]", f"ratio (target <= {TARGET_RATIO})",
            "minibuild peak RSS", "buildah peak RSS", "load before/after"]
    rows = []
    for r in results:
        q = ratio(r)
        verdict = "n/a" if q is None else f"{q:.2f} {'ok' if q <= TARGET_RATIO else 'OVER'}"
        rows.append([r.name, fmt_spread(r.minibuild), fmt_spread(r.buildah), verdict,
                     fmt_rss(r.minibuild), fmt_rss(r.buildah), "/".join(f"{x:.1f}" for x in r.loadavg)])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def machine() -> dict[str, str]:
    """Date, nproc, kernel and tool versions, for the record."""
    mb = subprocess.run([sys.executable, "-m", "minibuild", "--version"], capture_output=True, text=True)
    head = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": head.stdout.strip() or "n/a", "nproc": str(os.cpu_count()),
            "kernel": platform.release(), "python": platform.python_version(),
            "minibuild": (mb.stdout or mb.stderr).strip(), "buildah": Buildah.version(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# ---------------------------------------------------------------- driving


def run_case(name: str, work: Path, mb: Minibuild, bh: Optional[Buildah], base_oci: Path,
             runs: int) -> CaseResult:
    """Generate the context once, then alternate minibuild and buildah cold builds `runs` times."""
    description, make = CASES[name]
    ctx = work / f"ctx-{name}"
    make(ctx)
    result = CaseResult(name, description, loadavg=[round(os.getloadavg()[0], 2)])
    for i in range(runs):
        s = mb.build(ctx, i)
        result.minibuild.append(s)
        line = f"  {name} run {i + 1}/{runs}: minibuild {s.seconds:.2f} s{'' if s.ok else ' FAILED'}"
        if bh is not None:
            b = bh.build(ctx, base_oci)
            result.buildah.append(b)
            line += f", buildah {b.seconds:.2f} s{'' if b.ok else ' FAILED'}"
        print(line, flush=True)
        for sample, log in ((s, mb.log), (result.buildah[-1] if result.buildah else None, bh.log if bh else None)):
            if sample is not None and log is not None and not sample.ok:
                print(tail(log))
    shutil.rmtree(ctx, ignore_errors=True)
    result.loadavg.append(round(os.getloadavg()[0], 2))
    return result


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, to show why a build failed."""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    | " + x for x in text)


def snapshot_figures(work: Path) -> str:
    """Run bench/snapshot_bench.py in its quick mode (--skip-1g) and return its output."""
    script = Path(__file__).resolve().parent / "snapshot_bench.py"
    if not script.exists():
        return "bench/snapshot_bench.py not found"
    out = subprocess.run([sys.executable, str(script), "--skip-1g", "--scratch", str(work)],
                         capture_output=True, text=True, cwd=REPO)
    return (out.stdout + (out.stderr if out.returncode else "")).rstrip()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="cold builds per case and tool (default 3)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--compression", default="zstd", choices=["zstd", "gzip", "none"],
                    help="minibuild layer compression (default zstd, minibuild's default)")
    ap.add_argument("--no-snapshot", action="store_true", help="skip bench/snapshot_bench.py")
    ap.add_argument("--scratch", type=Path, default=None, help="parent of the temp dir (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the chosen cases, print the table, optionally write JSON."""
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("build_bench.py needs root (overlay mounts, chroot)", file=sys.stderr)
        return 2
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="buildbench-", dir=args.scratch))
    bh = Buildah(work) if Buildah.available() else None
    if bh is None:
        print("buildah not found: its columns say n/a (apt-get install -y buildah)")
    results: list[CaseResult] = []
    snapshot = ""
    try:
        mb = Minibuild(work, args.compression)
        base_oci = mb.make_base()
        for name in args.cases:
            results.append(run_case(name, work, mb, bh, base_oci, args.runs))
        if not args.no_snapshot:
            print("running bench/snapshot_bench.py --skip-1g ...", flush=True)
            snapshot = snapshot_figures(work)
    finally:
        if bh is not None:
            bh.reset()
        unmount_under(work, work / "cleanup.log")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"Cold builds, {args.runs} runs each, minibuild --compression {args.compression}; "
          "peak RSS = max ru_maxrss (wait4) over the runs")
    print(table(results))
    if snapshot:
        print("\nbench/snapshot_bench.py --skip-1g:\n" + snapshot)
    if args.json:
        data = {"machine": info, "runs": args.runs, "compression": args.compression,
                "cases": [{**asdict(r), "ratio": ratio(r)} for r in results], "snapshot_bench": snapshot}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
