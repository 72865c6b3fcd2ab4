"""Run a build step (or a Python callable) inside an image: overlayfs, namespaces, a cgroup, and
pivot_root (RUN, containers) or chroot (call).

Every mount lives only in a forked child's private mount namespace, so when minibuild dies, even
by SIGKILL, the kernel tears the mounts down with the child (the process tree and the children's
fork-safety rules are in sandbox/children.py). This module is the parent's side: it checks
and prepares the dirs and the step's cgroup, and starts the helper tree (helpertree.py streams
its pipes, and stops and reaps it).
Caveats for callers: PDEATHSIG fires when the *thread* that forked exits (a caller blocked in
run/call is fine), and `call`'s fn runs in a fork, so it must not take locks that other threads
of the parent may hold (logging handlers, rich consoles).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from minibuild.fs import idmap
from minibuild.fs.files import remove_tree
from minibuild.sandbox.cgroups import Cgroup
from minibuild.sandbox.channel import Pipes
from minibuild.sandbox.confinement import UNCONFINED, Confinement, SecurityOptions, prepare
from minibuild.sandbox.network import Networks, resolv_conf
from minibuild.sandbox.idranges import IdNamespace, mapping
from minibuild.sandbox.children import CallPlan, RunPlan, call_child, namespace_child
from minibuild.sandbox.helpertree import drive, start
from minibuild.errors import SandboxError
from minibuild.fs.rootpath import ImagePath
from minibuild.sandbox.overlay import OverlayOptions, distinct_lowers, kernel_overlay_params, mount_extra, \
    new_mount_api, overlay_extra_options
from minibuild.sandbox.process import DEFAULT_PATH, Process, check_process, exec_failure, exit_status, \
    process_environment
from minibuild.sandbox.limits import Limits
from minibuild.sandbox.scaffold import make_scaffold
from minibuild.sandbox.stepmounts import ImageLookup, StepMount, make_stubs

# re-exported: callers import these from here
__all__ = ["DEFAULT_PATH", "OverlayOptions", "Process", "RootFS", "Sandbox", "check_support",
           "exec_failure", "exit_status", "kernel_overlay_params", "make_scaffold",
           "new_mount_api", "overlay_extra_options", "process_environment"]


@dataclass(frozen=True)
class RootFS:
    """The dirs of one overlay mount (an empty upper gets the image root's mode and owner)."""

    lowers: tuple[Path, ...]  # image layer dirs, TOP FIRST; may be empty (FROM scratch)
    upper: Path  # existing empty-or-not dir that takes every write
    work: Path  # existing empty dir on the same fs as upper (overlay workdir)
    merged: Path  # existing empty dir used as the mount point


def check_support() -> None:
    """Raise SandboxError unless we are root and the kernel has overlayfs."""
    if os.geteuid() != 0:
        raise SandboxError("minibuild build needs root (overlayfs mounts and chroot) or the "
                           "rootless user namespace, which the `minibuild` command enters")
    if idmap.in_user_namespace():
        check_userns_overlay(os.uname().release)
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        raise SandboxError(f"cannot read /proc/filesystems: {exc.strerror}") from exc
    if not any(line.split()[-1:] == ["overlay"] for line in filesystems.splitlines()):
        raise SandboxError("overlayfs is not available: 'overlay' is not in /proc/filesystems "
                           "(try `modprobe overlay`)")


def check_userns_overlay(release: str) -> None:
    """Raise SandboxError when this kernel cannot mount overlayfs in a user namespace (5.11+)."""
    numbers = release.split("-")[0].split(".")
    try:
        version = (int(numbers[0]), int(numbers[1]))
    except (IndexError, ValueError):
        return  # unknown: let the mount say
    if version < (5, 11):
        raise SandboxError(f"this kernel ({release}) cannot mount overlayfs in a user namespace "
                           "(Linux 5.11 or later can); rootless minibuild has no fuse-overlayfs "
                           "fallback yet: run it as root")


def _prepare_upper(rootfs: RootFS) -> None:
    """Give an empty upper the image root's mode/owner: overlay shows `/` with the upper's."""
    if any(rootfs.upper.iterdir()):
        return
    st = os.stat(rootfs.lowers[0]) if rootfs.lowers else None
    uid, gid, mode = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) if st else (0, 0, 0o755)
    os.chown(rootfs.upper, uid, gid)
    os.chmod(rootfs.upper, mode)


def _check_rootfs(rootfs: RootFS) -> None:
    """Fail early, in the parent, on a missing dir."""
    named = [("upper", rootfs.upper), ("work", rootfs.work), ("merged", rootfs.merged)]
    for what, path in named + [("lower", p) for p in rootfs.lowers]:
        if not os.path.isdir(path):
            raise SandboxError(f"overlay {what} dir {path} does not exist or is not a directory")
    if len(rootfs.lowers) > 499:
        raise SandboxError(f"too many layers ({len(rootfs.lowers)}): overlayfs stacks at most 500")


class Sandbox:
    """Runs commands and Python callables inside an image's root; no daemon, no mount left."""

    def __init__(self, *, mount_api: str = "auto",
                 resolv_conf: Path = Path("/etc/resolv.conf"),
                 image_lookup: ImageLookup | None = None,
                 security: SecurityOptions = SecurityOptions(),
                 networks: Networks | None = None, limits: Limits | None = None,
                 userns: IdNamespace | None = None) -> None:
        """`image_lookup` finds a path in an image from its layer dirs (layer/layerpath.resolve):
        a run with mounts needs it to make the mount points the image lacks. `security`:
        docker's defaults unless told (its seccomp profile, no no_new_privs). `networks`: the
        build's or container's network namespaces (else each run makes its own). Each `run`
        gets a cgroup of its own enforcing `limits`. `userns` (--userns=auto): every `run`
        executes as root of that user namespace (idmapped.py)."""
        if mount_api not in ("auto", "new", "legacy"):
            raise ValueError(f"mount_api must be auto, new or legacy, not {mount_api!r}")
        self.mount_api = mount_api
        self.resolv_conf = resolv_conf
        self.image_lookup = image_lookup
        self.security = security
        self.networks = networks
        self.limits = limits
        self.oom_killed = False  # whether the last `run` lost a process to its memory limit
        self.userns = userns

    def _lookup(self, layers: Sequence[Path]) -> Callable[[str], ImagePath]:
        """The image lookup bound to these layer dirs (top first)."""
        if self.image_lookup is None:
            raise ValueError("a Sandbox that runs with mounts needs an image_lookup")
        return functools.partial(self.image_lookup, layers)

    def _new_api(self) -> bool:
        """Whether to mount with fsopen/fsconfig (no page limit) rather than mount(2)."""
        return new_mount_api() if self.mount_api == "auto" else self.mount_api == "new"

    def _overlay(self, rootfs: RootFS, lowers: Sequence[Path]) -> OverlayOptions:
        """The overlay options for these lowers (absolute paths: the legacy path chdirs)."""
        return OverlayOptions(distinct_lowers([os.path.abspath(p) for p in lowers]),
                              os.path.abspath(rootfs.upper), os.path.abspath(rootfs.work),
                              mount_extra())

    def _resolv(self, network: str) -> bytes:
        """The host's resolv.conf (or nothing), as the step's network can use it."""
        try:
            return resolv_conf(network, self.resolv_conf.read_bytes())
        except OSError:
            return resolv_conf(network, b"")

    @contextlib.contextmanager
    def _netns(self, network: str):
        """An fd on the network namespace a step of this mode joins (None: the host's)."""
        if self.networks is not None:
            yield self.networks.netns(network)
            return
        with Networks() as networks:
            yield networks.netns(network)

    def run(self, rootfs: RootFS, process: Process, on_output: Callable[[bytes], None], *,
            on_start: Callable[[int], None] | None = None,
            mounts: Sequence[StepMount] = ()) -> int:
        """Run `process` in the root; stream stdout+stderr; its exit status (128+sig if killed).

        `on_start(pid)` gets the host pid of the sandbox's init (pid 1 inside) once it runs, for
        a container's `exec`/`stop`; with `process.stdio` nothing reaches `on_output`.
        `mounts` (a RUN's --mount) are made over the root before the command starts; their
        missing mount points go into the scaffold, never into the upper dir.
        """
        check_support()
        check_process(process)
        _check_rootfs(rootfs)
        # compiled once per process and options; a privileged step (RUN --security=insecure)
        # is seccomp-unconfined, as `docker run --privileged`
        security = self.security
        if process.privileged:
            security = replace(security, seccomp=UNCONFINED)
        confinement = prepare(security)
        self.oom_killed = False
        _prepare_upper(rootfs)
        with self._netns(process.network) as netns:
            return self._run(rootfs, process, on_output, on_start, mounts, confinement, netns)

    def _run(self, rootfs: RootFS, process: Process, on_output: Callable[[bytes], None],
             on_start: Callable[[int], None] | None, mounts: Sequence[StepMount],
             confinement: Confinement, netns: int | None) -> int:
        """`run` once the network namespace (if any) is there."""
        scaffold = make_scaffold(rootfs.work.parent, rootfs.lowers, process.hostname,
                                 self._resolv(process.network))
        group = None
        try:
            if mounts:  # the upper too: a container's holds what it wrote in earlier runs
                make_stubs(scaffold, self._lookup((rootfs.upper, *rootfs.lowers)), mounts)
            group = Cgroup.create(self.limits) if self.limits is not None else None
            plan = RunPlan(self._overlay(rootfs, (scaffold, *rootfs.lowers)),
                            os.path.abspath(rootfs.merged), process, os.getpid(),
                            self._new_api(), str(scaffold), tuple(mounts), confinement, netns,
                            mapping(self.userns))
            names = ("out", "info", "ack") + (("stdin",) if process.stdin is not None else ()) \
                + (("joined",) if group is not None else ())
            with Pipes(*names) as pipes:
                step = start(pipes, lambda: namespace_child(plan, pipes), on_start, group)
                status = exit_status(drive(step, process.stdin, on_output))
            self.oom_killed = group is not None and group.oom_kills() > 0
            return status
        finally:
            if group is not None:
                group.remove()
            remove_tree(scaffold, ignore_errors=True)

    def call(self, rootfs: RootFS, fn: Callable[[], None], *, cwd: Path | None = None,
             source: RootFS | None = None, pre_chroot: Callable[[], None] | None = None) -> None:
        """Run fn in a child that did chdir(cwd) then chroot(merged); re-raise its exception.

        With `source`, a second overlay (e.g. the stage `COPY --from` reads) is mounted on
        source.merged first, and `pre_chroot` runs after chdir but before chroot, while host
        paths still resolve (it may prepare what fn needs: both run in the same child).
        """
        check_support()
        _check_rootfs(rootfs)
        _prepare_upper(rootfs)
        if source is not None:
            _check_rootfs(source)
        empty = None
        if not rootfs.lowers or (source is not None and not source.lowers):
            # overlay needs a lowerdir even FROM scratch
            empty = Path(tempfile.mkdtemp(prefix=".minibuild-empty-", dir=rootfs.work.parent))
        try:
            lowers = rootfs.lowers or (empty,)
            mounted_source = None
            if source is not None:
                mounted_source = (self._overlay(source, source.lowers or (empty,)),
                                  os.path.abspath(source.merged))
            plan = CallPlan(self._overlay(rootfs, lowers), os.path.abspath(rootfs.merged),
                             None if cwd is None else os.path.abspath(cwd), os.getpid(),
                             self._new_api(), mounted_source, pre_chroot)
            with Pipes("info") as pipes:
                step = start(pipes, lambda: call_child(plan, pipes, fn))
                status = exit_status(drive(step, None, lambda data: None))
        finally:
            if empty is not None:
                remove_tree(empty, ignore_errors=True)
        if status != 0:
            raise SandboxError(f"sandbox helper ended with status {status} and no message")
