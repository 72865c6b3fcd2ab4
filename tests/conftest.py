"""Shared fixtures: a minibuild runner on a temporary store, and a busybox base image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = shutil.which("busybox")


def overlay_available() -> bool:
    """Whether the kernel knows overlayfs."""
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def user_xattrs_work(path: Path) -> bool:
    """Whether files under `path` take `user.*` xattrs (tests of overlay's xattr forms need them)."""
    probe = path / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.test", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def integration_skip_reason() -> str | None:
    """Why the integration tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (overlayfs mounts, chroot)"
    if not overlay_available():
        return "the kernel has no overlayfs"
    if BUSYBOX is None:
        return "needs busybox (apt-get install busybox-static)"
    return None


@dataclass
class Minibuild:
    """Runs the real command line against one store."""

    root: Path

    def run(self, *args: str, check: bool = True, cwd: Path | None = None,
            env: dict | None = None, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """`minibuild --root ROOT args...`; text output; raises with both streams if check fails."""
        inherited = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        # No registries config unless a test names one: the machine's /etc/containers is not ours.
        full_env = {"MINIBUILD_REGISTRIES_CONF": os.devnull, **inherited,
                    "MINIBUILD_ROOT": str(self.root), **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "minibuild", *args], cwd=cwd or REPO,
                              env=full_env, capture_output=True, input=input, timeout=timeout)
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"minibuild {' '.join(args)} exited {proc.returncode}\n"
                                 f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}")
        return out

    def build(self, context: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`minibuild build --progress plain ARGS CONTEXT`."""
        return self.run("build", "--progress", "plain", *args, str(context), check=check)


def make_base_context(directory: Path) -> Path:
    """The sample base image's context with Debian's static busybox copied in."""
    shutil.copytree(REPO / "sample_images" / "base", directory, dirs_exist_ok=True)
    target = directory / "rootfs" / "bin" / "busybox"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, target)
    return directory


@pytest.fixture(scope="session")
def base_store(tmp_path_factory) -> Path:
    """A store holding `base:1.0` (busybox), built once per session; copy it, never change it."""
    reason = integration_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("base-store")
    context = make_base_context(tmp_path_factory.mktemp("base-context"))
    Minibuild(root).build(context, "-t", "base:1.0")
    return root


@pytest.fixture
def mb(base_store, tmp_path) -> Minibuild:
    """A minibuild on a fresh temporary store that already holds base:1.0."""
    root = tmp_path / "store"
    subprocess.run(["cp", "-a", str(base_store), str(root)], check=True)
    return Minibuild(root)


@pytest.fixture
def empty_mb(tmp_path) -> Minibuild:
    """A minibuild on an empty temporary store."""
    return Minibuild(tmp_path / "empty-store")


def write_context(directory: Path, buildfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A build context: a Buildfile plus some files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Buildfile").write_text(buildfile)
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory
