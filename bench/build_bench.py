"""Build benchmark: minibuild vs buildah on the same busybox base; prints figures, asserts nothing.

Usage (as root):  python3 bench/build_bench.py [--runs N] [--cases NAME ...] [--modes cold warm warm-engine onefile]
                  [--json out.json] [--compression gzip|zstd|none] [--no-snapshot] [--no-buildah] [--keep]

Everything lives in one temp dir that is removed at the end: the minibuild stores (`--root`), the
buildah storage (`--root/--runroot`, overlay driver, so the user's default storage is never
touched) and the generated build contexts. Modes: `cold` uses fresh stores (no cache hit for
either tool); `warm` rebuilds with nothing changed in a store that already built the case (the
first rebuild writes minibuild's build memo, later ones answer from it); `warm-engine` does the
same with the memo off (MINIBUILD_MEMO=0: the step cache answers); `onefile` changes one file (a new content each run) and rebuilds in that same store.
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
# warm-engine: a warm rebuild with the build memo off (MINIBUILD_MEMO=0): the engine's step cache.
MODES = ("cold", "warm", "warm-engine", "onefile")
TARGETS = {"cold": 0.5, "warm": 0.3, "warm-engine": 0.3, "onefile": 0.5}  # minibuild/buildah


# ---------------------------------------------------------------- measuring one process


@dataclass
class Sample:
    """One timed build: wall seconds and the peak RSS (KiB) that wait4 reports for the process tree."""

    seconds: float
    maxrss_kib: int
    ok: bool


def fresh_groups(work: Path) -> None:
    """Make ext4 place every store, storage and context made in `work` in a roomy block group.

    On ext4 without a journal the inode allocator skips inodes freed in the last minute, and
    rescans them for each new inode (see minibuild/topdir.py): a tool's storage made where the
    last run's 20,000 files were just removed would be timed for the bench's cleanup. minibuild
    spreads its own scratch dirs already; flagging `work` gives buildah's storage the same start.
    (Keeping old stores instead of removing them costs more: fresh page-cache pages of this VM
    are slow to touch the first time, which made run-200mb 1.1 s -> 1.9 s.)
    """
    sys.path.insert(0, str(REPO))
    from minibuild.store.topdir import spread_children

    spread_children(work)


def python_env(work: Path) -> dict[str, str]:
    """The environment for minibuild: bytecode cached (in `work`), as an installed package has it.

    Some shells export PYTHONDONTWRITEBYTECODE=1; then every command recompiles ~40 modules
    (+0.08 s), which no real install pays. PYTHONPYCACHEPREFIX keeps the repo free of __pycache__.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def run_measured(cmd: list[str], log: Path, cwd: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None) -> Sample:
    """Run `cmd` with output to `log`; time it with perf_counter and read ru_maxrss from os.wait4.

    ru_maxrss from wait4 is the largest RSS of the child or any descendant it reaped (a maximum,
    not a sum), so the figure is minibuild's own peak unless a RUN step's process was bigger.
    Every timed command starts after a sync: the dirty pages of the last build (hundreds of MB
    in run-200mb) are written out before, not in the middle of, the next one.
    """
    os.sync()
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(seconds, usage.ru_maxrss, proc.returncode == 0)


def run_quiet(cmd: list[str], log: Path, check: bool = True, env: Optional[dict[str, str]] = None) -> bool:
    """Run an untimed helper command, appending its output to `log`."""
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env).returncode
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
        self.env = python_env(work)

    def cli(self, root: Path, *args: str) -> list[str]:
        """The command line for `minibuild --root ROOT ARGS`."""
        return [sys.executable, "-m", "minibuild", "--root", str(root), *args]

    def make_base(self, compression: str = "gzip") -> Path:
        """Build the busybox base into the template store as BASE_REF; return the OCI dir."""
        busybox = BASE_CONTEXT / "rootfs" / "bin" / "busybox"
        if not busybox.exists():
            raise SystemExit(f"missing {busybox}: install -D -m755 /bin/busybox {busybox}")
        run_quiet(self.cli(self.template, "build", "--progress", "plain", "--compression", compression,
                           "-t", BASE_REF, str(BASE_CONTEXT)), self.log, env=self.env)
        return self.template / "oci"

    def build(self, context: Path, run: int) -> Sample:
        """Time one cold build of `context` in a fresh copy of the template store, then drop the store."""
        store = self.work / f"mb-run{run}"
        run_quiet(["cp", "-a", str(self.template), str(store)], self.log)
        try:
            cmd = self.cli(store, "build", "--progress", "plain", "--compression", self.compression,
                           "-t", "bench:1", "-f", str(context / "Buildfile"), str(context))
            return run_measured(cmd, self.log, env=self.env)
        finally:
            shutil.rmtree(store, ignore_errors=True)

    def _build_cmd(self, store: Path, context: Path) -> list[str]:
        return self.cli(store, "build", "--progress", "plain", "--compression", self.compression,
                        "-t", "bench:1", "-f", str(context / "Buildfile"), str(context))

    def prepare(self, context: Path) -> Path:
        """A store copied from the template in which `context` was built once (untimed)."""
        store = self.work / "mb-rebuild"
        shutil.rmtree(store, ignore_errors=True)
        run_quiet(["cp", "-a", str(self.template), str(store)], self.log)
        run_quiet(self._build_cmd(store, context), self.log, env=self.env)
        return store

    def rebuild(self, store: Path, context: Path, memo: bool = True) -> Sample:
        """Time one build of `context` in a prepared store (cache hits where nothing changed);
        memo=False turns the build memo off, so the engine answers from its step cache."""
        env = self.env if memo else {**self.env, "MINIBUILD_MEMO": "0"}
        return run_measured(self._build_cmd(store, context), self.log, env=env)


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

    def _bud(self, context: Path) -> list[str]:
        return self.cli("bud", "--isolation", "chroot", "--layers", "--pull=never",
                        "-f", str(context / "Buildfile"), "-t", "bench:1", str(context))

    def build(self, context: Path, base_oci: Path) -> Sample:
        """Time one cold `buildah bud` on a fresh storage that holds only the base."""
        self.reset()
        try:
            self.import_base(base_oci)
            return run_measured(self._bud(context), self.log)
        finally:
            self.reset()

    def prepare(self, context: Path, base_oci: Path) -> bool:
        """A fresh storage with the base, in which `context` was built once (untimed); False if it failed.

        buildah 1.28 fails past 127 layers ("max depth exceeded"), e.g. on the 200-runs case.
        """
        self.reset()
        self.import_base(base_oci)
        return run_quiet(self._bud(context), self.log, check=False)

    def rebuild(self, context: Path) -> Sample:
        """Time one `bud --layers` in the prepared storage (its layer cache hits where nothing changed)."""
        sample = run_measured(self._bud(context), self.log)
        unmount_under(self.work, self.log)
        return sample

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
    """One RUN writing 200 MB of random data, then a small COPY (the one-file change)."""
    write(ctx / "VERSION", "1\n")
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
RUN dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null
RUN rm /big
COPY VERSION /VERSION
CMD ["sh"]
""")


def many_files_path(i: int) -> str:
    """The context-relative path of file `i` of the many-files case."""
    return f"src/d{i % 20:02d}/e{(i // 20) % 25:02d}/f{i:05d}.txt"


def case_many_files(ctx: Path, count: int = 20_000) -> None:
    """COPY of `count` small files (1-4 KB, nested dirs), then a RUN touching ten of them."""
    for i in range(count):
        size = 1024 + (i * 7919) % 3073  # 1..4 KiB, spread deterministically
        line = f"file {i} of the many-files case; some text to fill the file\n".encode()
        write(ctx / many_files_path(i), (line * (size // len(line) + 1))[:size])
    touched = " ".join("/" + many_files_path(i) for i in range(0, count, count // 10))
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
COPY src/ /src/
RUN touch {touched}
CMD ["sh"]
""")


def runs_buildfile(steps: int, last: str = "last") -> str:
    """`RUN mkdir /steps`, then `steps` RUNs each writing a small file, the last one saying `last`."""
    runs = "".join(f"RUN echo step {i} > /steps/s{i:03d}.txt\n" for i in range(steps - 1))
    return f"FROM {BASE_REF}\nRUN mkdir /steps\n{runs}RUN echo {last} > /steps/last.txt\nCMD [\"sh\"]\n"


def case_many_runs(ctx: Path, steps: int = 60) -> None:
    """`steps` RUN steps, each writing one small file."""
    write(ctx / "Buildfile", runs_buildfile(steps))


def case_200_runs(ctx: Path) -> None:
    """200 RUN steps: more lowerdirs than one page of overlay mount options holds."""
    case_many_runs(ctx, 200)


def case_big_base(ctx: Path) -> None:
    """A 1 GiB layer, then a RUN writing one small file on top (the step the one-file change redoes)."""
    write(ctx / "stamp", "1\n")
    write(ctx / "Buildfile", f"""FROM {BASE_REF}
RUN dd if=/dev/urandom of=/gig bs=1M count=1024 2>/dev/null
COPY stamp /stamp
RUN cat /stamp > /small
CMD ["sh"]
""")


def change_file(rel: str) -> Callable[[Path, int], None]:
    """A one-file change: rewrite context file `rel` with content unique to run `n`."""
    def change(ctx: Path, n: int) -> None:
        path = ctx / rel
        path.write_bytes(path.read_bytes().split(b"\n#changed")[0] + b"\n#changed %d\n" % n)
    return change


def change_last_run(steps: int) -> Callable[[Path, int], None]:
    """A one-file change of a RUN-only case: the Buildfile's last RUN writes a new text."""
    def change(ctx: Path, n: int) -> None:
        write(ctx / "Buildfile", runs_buildfile(steps, f"changed-{n}"))
    return change


@dataclass(frozen=True)
class Case:
    """A generated context, and the one-file change applied before each `onefile` rebuild."""

    description: str
    make: Callable[[Path], None]
    change: Callable[[Path, int], None]


CASES: dict[str, Case] = {
    "small-app": Case("COPY 4 files, RUN echo, ENV, WORKDIR, CMD; change: app/config.ini",
                      case_small, change_file("app/config.ini")),
    "run-200mb": Case("RUN dd 200 MB, RUN rm, COPY VERSION; change: VERSION",
                      case_big_run, change_file("VERSION")),
    "copy-20k": Case("COPY 20,000 files of 1-4 KB, RUN touch 10; change: one of the files",
                     case_many_files, change_file(many_files_path(12345))),
    "60-runs": Case("61 RUN steps, each writes a small file; change: the last RUN's text",
                    case_many_runs, change_last_run(60)),
    "200-runs": Case("201 RUN steps (past overlay's one-page option limit); change: the last RUN",
                     case_200_runs, change_last_run(200)),
    "1g-base": Case("RUN dd 1 GiB, COPY stamp, RUN cat stamp > /small; change: stamp",
                    case_big_base, change_file("stamp")),
}
DEFAULT_CASES = ["small-app", "run-200mb", "copy-20k", "60-runs"]


# ---------------------------------------------------------------- results


@dataclass
class ModeResult:
    """All samples of one case in one mode, for both tools."""

    case: str
    mode: str
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


def ratio(result: ModeResult) -> Optional[float]:
    """minibuild median / buildah median."""
    a, b = spread(result.minibuild), spread(result.buildah)
    return a[0] / b[0] if a and b else None


def fmt_rss(samples: list[Sample]) -> str:
    """The largest peak RSS over the runs, in MiB."""
    ok = [s.maxrss_kib for s in samples if s.ok]
    return f"{max(ok) / 1024:.0f} MiB" if ok else "n/a"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with padded columns."""
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def table(results: list[ModeResult]) -> str:
    """Case, mode, both tools' median [min-max], ratio vs the mode's target, peak RSS, load."""
    head = ["case", "mode", "minibuild median [min-max]", "buildah median [min-max]", "ratio (target)",
            "minibuild peak RSS", "buildah peak RSS", "load before/after"]
    rows = []
    for r in results:
        q, target = ratio(r), TARGETS[r.mode]
        verdict = "n/a" if q is None else f"{q:.2f} (<= {target}) {'ok' if q <= target else 'OVER'}"
        rows.append([r.case, r.mode, fmt_spread(r.minibuild), fmt_spread(r.buildah), verdict,
                     fmt_rss(r.minibuild), fmt_rss(r.buildah), "/".join(f"{x:.1f}" for x in r.loadavg)])
    return markdown(head, rows)


def machine() -> dict[str, str]:
    """Date, nproc, kernel and tool versions, for the record."""
    mb = subprocess.run([sys.executable, "-m", "minibuild", "--version"], capture_output=True, text=True)
    head = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": head.stdout.strip() or "n/a", "nproc": str(os.cpu_count()),
            "kernel": platform.release(), "python": platform.python_version(),
            "minibuild": (mb.stdout or mb.stderr).strip(), "buildah": Buildah.version(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# ---------------------------------------------------------------- driving


def report(result: ModeResult, i: int, runs: int, mb: Minibuild, bh: Optional[Buildah]) -> None:
    """Print one run's times, and the log tails of failed builds."""
    s = result.minibuild[-1]
    line = f"  {result.case} {result.mode} run {i + 1}/{runs}: minibuild {s.seconds:.2f} s{'' if s.ok else ' FAILED'}"
    if not s.ok:
        line += "\n" + tail(mb.log)
    if bh is not None and result.buildah:
        b = result.buildah[-1]
        line += f", buildah {b.seconds:.2f} s{'' if b.ok else ' FAILED'}"
        if not b.ok:
            line += "\n" + tail(bh.log)
    print(line, flush=True)


def run_cold(name: str, ctx: Path, mb: Minibuild, bh: Optional[Buildah], base_oci: Path,
             runs: int) -> ModeResult:
    """Alternate minibuild and buildah cold builds `runs` times (fresh stores every time)."""
    result = ModeResult(name, "cold", loadavg=[os.getloadavg()[0]])
    for i in range(runs):
        result.minibuild.append(mb.build(ctx, i))
        if bh is not None:
            result.buildah.append(bh.build(ctx, base_oci))
        report(result, i, runs, mb, bh)
    result.loadavg.append(os.getloadavg()[0])
    return result


def run_rebuilds(name: str, ctx: Path, mb: Minibuild, bh: Optional[Buildah], base_oci: Path,
                 runs: int, modes: list[str]) -> list[ModeResult]:
    """Build once per tool (untimed), then `warm` rebuilds, then `onefile` change+rebuild rounds."""
    store = mb.prepare(ctx)
    if bh is not None and not bh.prepare(ctx, base_oci):
        print(f"  {name}: buildah could not build it once; its rebuild columns say FAIL")
        bh.reset()
        bh = None
        failed = Sample(0.0, 0, False)
    else:
        failed = None
    results = []
    try:
        for mode in (m for m in ("warm", "warm-engine", "onefile") if m in modes):
            result = ModeResult(name, mode, loadavg=[os.getloadavg()[0]])
            for i in range(runs):
                if mode == "onefile":
                    CASES[name].change(ctx, i)
                result.minibuild.append(mb.rebuild(store, ctx, memo=mode != "warm-engine"))
                if bh is not None:
                    result.buildah.append(bh.rebuild(ctx))
                elif failed is not None:
                    result.buildah.append(failed)
                report(result, i, runs, mb, bh)
            result.loadavg.append(os.getloadavg()[0])
            results.append(result)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        if bh is not None:
            bh.reset()
    return results


def run_case(name: str, work: Path, mb: Minibuild, bh: Optional[Buildah], base_oci: Path,
             runs: int, modes: list[str]) -> list[ModeResult]:
    """Generate the context once, then run the chosen modes."""
    ctx = work / f"ctx-{name}"
    CASES[name].make(ctx)
    try:
        results = [run_cold(name, ctx, mb, bh, base_oci, runs)] if "cold" in modes else []
        if {"warm", "warm-engine", "onefile"} & set(modes):
            results += run_rebuilds(name, ctx, mb, bh, base_oci, runs, modes)
        return results
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def startup_figures(mb: Minibuild, runs: int = 9) -> str:
    """Median wall time of `minibuild --help`, `history` and `images` on the template store.

    Uses the console script next to this interpreter (a pyenv shim alone adds ~0.1 s).
    """
    script = Path(sys.executable).parent / "minibuild"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "minibuild"]
    rows = []
    for args in (["--help"], ["--root", str(mb.template), "history", BASE_REF],
                 ["--root", str(mb.template), "images"]):
        samples = [run_measured(launcher + args, mb.log, env=mb.env) for _ in range(runs)]
        rows.append([" ".join(["minibuild", *args]).replace(str(mb.template), "ROOT"),
                     fmt_spread(samples), fmt_rss(samples)])
    return markdown(["command", f"median [min-max] of {runs}", "peak RSS"], rows)


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
    ap.add_argument("--runs", type=int, default=3, help="timed builds per case, mode and tool (default 3)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES,
                    help=f"default: {' '.join(DEFAULT_CASES)}")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "none"],
                    help="minibuild layer compression (default gzip, minibuild's default)")
    ap.add_argument("--no-snapshot", action="store_true", help="skip bench/snapshot_bench.py")
    ap.add_argument("--no-buildah", action="store_true", help="time minibuild only")
    ap.add_argument("--scratch", type=Path, default=None, help="parent of the temp dir (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    return ap.parse_args(argv)


def run_all(args: argparse.Namespace, work: Path, bh: Optional[Buildah]) -> tuple[list[ModeResult], str, str]:
    """Every chosen case and mode, then start-up times and (unless skipped) the snapshot bench."""
    mb = Minibuild(work, args.compression)
    base_oci = mb.make_base()
    results: list[ModeResult] = []
    for name in args.cases:
        results += run_case(name, work, mb, bh, base_oci, args.runs, args.modes)
    startup = startup_figures(mb)
    snapshot = ""
    if not args.no_snapshot:
        print("running bench/snapshot_bench.py --skip-1g ...", flush=True)
        snapshot = snapshot_figures(work)
    return results, startup, snapshot


def main(argv: Optional[list[str]] = None) -> int:
    """Run the chosen cases, print the tables, optionally write JSON."""
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("build_bench.py needs root (overlay mounts, chroot)", file=sys.stderr)
        return 2
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="buildbench-", dir=args.scratch))
    fresh_groups(work)
    bh = Buildah(work) if Buildah.available() and not args.no_buildah else None
    if bh is None:
        print("buildah not used: its columns say n/a (apt-get install -y buildah)")
    try:
        results, startup, snapshot = run_all(args, work, bh)
    finally:
        if bh is not None:
            bh.reset()
        unmount_under(work, work / "cleanup.log")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.runs} runs per case and mode, minibuild --compression {args.compression}; "
          "peak RSS = max ru_maxrss (wait4) over the runs; load = 1-min load average")
    print(table(results))
    print("\nStart-up (console script):\n" + startup)
    if snapshot:
        print("\nbench/snapshot_bench.py --skip-1g:\n" + snapshot)
    if args.json:
        data = {"machine": info, "runs": args.runs, "compression": args.compression, "startup": startup,
                "results": [{**asdict(r), "ratio": ratio(r)} for r in results], "snapshot_bench": snapshot}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
