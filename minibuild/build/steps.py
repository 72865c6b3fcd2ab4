"""Prepares the filesystem steps (RUN, COPY/ADD, WORKDIR): expansion, argv, copy plans.

A prepared step says what decides its result (its cache description), what history calls it,
and how to execute it on a mounted root. The engine decides whether to run it at all.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from minibuild.dockerfile import metadata, runcommand, shell as words
from minibuild.build import remoteadd, reuse
from minibuild.build.context import BuildContext
from minibuild.build.copier import CopyPlan, apply_copy
from minibuild.build.copymeter import CopyMeter
from minibuild.build.copyplan import ADD_FLAGS, COPY_FLAGS, check_flags, copy_plan, fail as _fail
from minibuild.build.rootwriter import ReuseMismatch
from minibuild.build.workdir import make_workdir
from minibuild.errors import BuildError
from minibuild.oci.image import ContainerConfig
from minibuild.dockerfile.instructions import Add, Run, Workdir, flag_value, flag_values
from minibuild.build.mountsetup import MountHost, Prepared
from minibuild.dockerfile.runmount import BindMount, CacheMount, parse_mounts
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.build.ports import Runner
from minibuild.sandbox.overlay import make_overlay_dirs
from minibuild.sandbox.sandbox import Process, RootFS
from minibuild.fs.files import remove_tree
from minibuild.text import shorten

_RUN_FLAGS = {"network", "mount", "security"}


@dataclass(frozen=True)
class FsStep:
    """A step that may change the filesystem, ready to run."""

    description: dict[str, Any]          # everything that decides the result (cache key input)
    created_by: str                      # the history text
    execute: Callable[[RootFS], None]    # runs the step on a mounted root
    config: ContainerConfig | None = None  # the config after the step, when the step changes it
    verify: Callable[[], None] | None = None  # after execute: are the inputs still what was keyed?
    reuse: Reuse | None = None  # how a rerun may reuse the files of the layer it made last time
    # A step that changes no file still makes an (empty) layer, as each of BuildKit's RUN,
    # COPY/ADD and WORKDIR does (docker build's diff_ids); only `WORKDIR /` makes none.
    layer_when_unchanged: bool = True
    meter: CopyMeter | None = None  # COPY/ADD: the bytes its copier writes (progress, note)


@dataclass(frozen=True)
class Reuse:
    """A COPY from the context that may reuse, by hard link, the unchanged files of the layer
    the same COPY (same `shape`: the description without the content key) made before."""

    shape: dict[str, Any]
    execute: Callable[[RootFS, Path], int]  # like FsStep.execute, given that layer's dir;
                                            # returns how many files were reused


@dataclass(frozen=True)
class CopySource:
    """Where `COPY --from` reads: an earlier stage's or an image's layer dirs (top first)."""

    name: str
    key: str                   # identifies the content (stage cache key or manifest digest)
    lowers: tuple[Path, ...]


class StepFactory:
    """Makes FsSteps; holds what their execution needs (sandbox, context, output, scratch)."""

    def __init__(self, sandbox: Runner, context: BuildContext, output: Callable[[bytes], None],
                 scratch: Callable[[str], Path], network: str, *, cache_mounts: Path | None = None,
                 secrets: Mapping[str, SecretSource] | None = None,
                 allow_insecure: bool = False, allow_host_network: bool = False) -> None:
        self.sandbox = sandbox
        self.allow_insecure = allow_insecure  # --allow security.insecure
        self.context = context
        self.output = output
        self.scratch = scratch
        self.network = network
        self.allow_host_network = allow_host_network or network == "host"
        self.mounts = MountHost(cache_mounts, secrets or {}, context, scratch,
                                notify=lambda line: output(f"{line}\n".encode()))

    # -- RUN -----------------------------------------------------------------------------------

    def run(self, run: Run, config: ContainerConfig, scope: metadata.Scope, label: str,
            source_of: Callable[[str], CopySource] | None = None) -> FsStep:
        """A RUN: argv through SHELL (heredocs folded in), env = ENV + ARGs, user, workdir,
        and its --mounts (`source_of` finds the stage or image a bind's from= names)."""
        check_flags(run, _RUN_FLAGS)
        command = runcommand.prepare(run, scope, config)
        process = Process(argv=command.argv, env=scope.process_env(config),
                          cwd=config.working_dir or "/", user=config.user or None,
                          network=self._network(run), pipes=command.pipes,
                          privileged=self._privileged(run),
                          **({"hostname": scope.hostname} if scope.hostname else {}))
        mounts = self._mounts(run, config, scope, source_of)
        unkeyed = scope.unkeyed_env(config)  # proxy args: in the env, not in the key

        def execute(rootfs: RootFS) -> None:
            with self.mounts.setup(mounts) as (step_mounts, secret_env):
                status = self.sandbox.run(rootfs, replace(process, secret_env=unkeyed + secret_env),
                                          self.output, mounts=step_mounts)
            if status != 0:
                oom = ": out of memory (over its --memory limit)" \
                    if getattr(self.sandbox, "oom_killed", False) else ""
                raise BuildError.at(
                    run, f"{label} `{shorten(run.original, 60)}` failed with exit code {status}"
                         f"{oom}", exit_status=status)

        description = {"run": list(command.argv), "env": [list(e) for e in process.env],
                       "cwd": process.cwd, "user": process.user, "network": process.network}
        if mounts:  # only then: the keys of RUNs without mounts stay what they were
            description["mounts"] = [m.key() for m in mounts]
        description.update(runcommand.key_extras(command, scope, config))
        if process.privileged:
            description["security"] = "insecure"
        verify = None
        if any(m.context is not None for m in mounts):
            verify = functools.partial(self._bound_unchanged, mounts, run)
        return FsStep(description, command.created_by, execute, verify=verify)

    def _mounts(self, run: Run, config: ContainerConfig, scope: metadata.Scope,
                source_of: Callable[[str], CopySource] | None) -> tuple[Prepared, ...]:
        """The RUN's --mounts, each with what it reads: the selected context sources and their
        content key, or the stage's or image's layers and key."""
        values = flag_values(run, "mount")
        if not values:
            return ()
        env = scope.expansion_env(config)
        expand = functools.partial(words.expand, env=env, escape=scope.escape, location=run.location)
        prepared = []
        for mount in parse_mounts(values, run.location, workdir=config.working_dir or "/",
                                  expand=expand):
            if isinstance(mount, CacheMount) and mount.from_ is not None:
                source = self._mount_source(mount.from_, run, source_of)
                prepared.append(Prepared(mount, lowers=source.lowers, from_key=source.key))
            elif not isinstance(mount, BindMount):
                prepared.append(Prepared(mount))
            elif mount.from_ is None:
                selection = self._bound_selection(mount, run)
                prepared.append(Prepared(mount, context=selection.sources[0],
                                         content=selection.content_key.hex))
            else:
                source = self._mount_source(mount.from_, run, source_of)
                prepared.append(Prepared(mount, lowers=source.lowers, from_key=source.key))
        return tuple(prepared)

    @staticmethod
    def _mount_source(name: str, run: Run, source_of: Callable[[str], CopySource] | None) -> CopySource:
        """The stage or image a mount's from= names."""
        if source_of is None:
            raise _fail(run, f"RUN --mount from={name} needs a build")
        return source_of(name)

    def _bound_selection(self, mount: BindMount, run: Run):
        """The one context source a bind names (no wildcards), hashed like a COPY source (so
        the build memo traces it too)."""
        pattern = mount.source or "."
        selection = self.context.select_sources([pattern], verb="RUN --mount")
        if len(selection.sources) != 1 or selection.sources[0].from_wildcard:
            raise _fail(run, f"RUN --mount source={mount.source}: a bind takes one file or "
                             "directory, not a wildcard")
        return selection

    def _bound_unchanged(self, mounts: tuple[Prepared, ...], run: Run) -> None:
        """Refuse a RUN whose bound context sources changed while it ran: its layer would be
        cached under content it did not see."""
        for item in mounts:
            if item.context is not None and isinstance(item.mount, BindMount):
                again = self.context.select_sources([item.mount.source or "."], verb="RUN --mount")
                if again.content_key.hex != item.content:
                    raise BuildError.at(run, "RUN failed: the build context changed while the "
                                        f"step ran (bound source {item.mount.source or '.'}); "
                                        "run the build again")

    def _privileged(self, run: Run) -> bool:
        """RUN --security=insecure, which only a build started with `--allow security.insecure`
        may use (BuildKit's entitlement): a Buildfile must not grant itself every capability."""
        if runcommand.security(run) == "sandbox":
            return False
        if not self.allow_insecure:
            raise _fail(run, "RUN --security=insecure is not allowed: start the build with "
                             "`--allow security.insecure`")
        return True

    def _network(self, run: Run) -> str:
        """RUN --network: default (the build's --network), none, or host, which only a build
        that allows it may use (as BuildKit's entitlement): the Buildfile's author must not
        lift what the user chose (`build --network none`)."""
        value = flag_value(run, "network")
        if value in (None, "default"):
            return self.network
        if value not in ("host", "none"):
            raise _fail(run, f"--network={value} is not supported (use default, none or host)")
        if value == "host" and not self.allow_host_network:
            raise _fail(run, "RUN --network=host is not allowed: the build must be started with "
                             "`--allow network.host` (or `--network host`)")
        return value

    # -- COPY / ADD ----------------------------------------------------------------------------

    def copy(self, instruction, config: ContainerConfig, scope: metadata.Scope,
             source: CopySource | None) -> FsStep:
        """COPY/ADD from the context, or with `--from` from a stage or image."""
        check_flags(instruction, ADD_FLAGS if isinstance(instruction, Add) else COPY_FLAGS | {"parents"})
        env = scope.expansion_env(config)
        expand = functools.partial(words.expand, env=env, escape=scope.escape,
                                   location=instruction.location)
        sources = tuple(expand(s) for s in instruction.paths)
        remote = remoteadd.remote_sources(instruction.keyword, sources, instruction)
        if remote and source is not None:
            raise _fail(instruction, "ADD --from takes paths in the stage or image, not URLs")
        unpack = remoteadd.unpack_flag(instruction) if isinstance(instruction, Add) else False
        plan = copy_plan(instruction, config, env, expand, source is not None, self.context,
                          remote, unpack)
        plan = replace(plan, meter=CopyMeter())
        flags = [f"--{name}={value}" for name, value in
                 (("from", source.name if source else None), ("chown", plan.chown), ("chmod", plan.chmod))
                 if value]
        flags[1 if source else 0:0] = ["--parents"] if plan.parents else []  # BuildKit's order
        created_by = " ".join([instruction.keyword, *flags, *sources,
                               *(f"<<{h.delimiter}" for h in instruction.heredocs), plan.dest])
        description = {"copy": instruction.keyword, "sources": list(sources), "dest": plan.dest,
                       "workdir": plan.workdir, "chown": plan.chown, "chmod": plan.chmod,
                       "inline": [[n, c.decode()] for n, c in plan.inline]}
        if plan.exclude or plan.parents:  # only then: other COPYs keep the keys they had
            description.update(exclude=list(plan.exclude), parents=plan.parents)
        if unpack is not None:  # only then: the keys of ADDs without --unpack stay what they were
            description["unpack"] = unpack
        if source is not None:
            description["from"] = source.key
            description["owners"] = "kept"  # since stages' uid/gid are kept: older layers differ
            return FsStep(description, created_by, self._copy_from(plan, sources, source, instruction),
                          meter=plan.meter)
        if remote:
            return self._copy_remote(instruction, plan, sources, description, created_by, scope, expand)
        verify = None
        if sources:
            selection = self.context.select_sources(sources, verb=instruction.keyword,
                                                    parents=plan.parents)
            plan = replace(plan, sources=selection.sources)
            description["content"] = selection.content_key.hex
            verify = functools.partial(self._unchanged, plan, sources, selection.content_key,
                                       instruction)
        shape = {k: v for k, v in description.items() if k != "content"}
        again = None
        if sources and not plan.unpack_archives and not plan.inline and not plan.exclude \
                and not plan.parents:  # reuse.py walks sources as a plain COPY does
            again = Reuse(shape, functools.partial(self._copy_reusing, plan))
        return FsStep(description, created_by, functools.partial(self._copy_context, plan),
                      verify=verify, reuse=again, meter=plan.meter)

    def _copy_remote(self, instruction, plan: CopyPlan, sources: tuple[str, ...],
                     description: dict[str, Any], created_by: str, scope: metadata.Scope,
                     expand: Callable[[str], str]) -> FsStep:
        """ADD of http(s) files or git repositories: fetched now, on the host (their content
        is the cache key), copied into the image from the scratch dir they were fetched to."""
        self.context.note_remote()
        fetched = remoteadd.fetch(instruction, sources, expand, self.scratch("remote"),
                                  dict(scope.proxies))
        plan = replace(plan, sources=fetched.sources)
        description["remote"] = list(fetched.keys)

        def execute(rootfs: RootFS) -> None:
            self.sandbox.call(rootfs, functools.partial(apply_copy, plan), cwd=fetched.root)
        return FsStep(description, created_by, execute, meter=plan.meter)

    def _unchanged(self, plan: CopyPlan, sources: tuple[str, ...], key, instruction) -> None:
        """Refuse a COPY whose sources changed while they were copied: its layer would be cached
        under content it does not hold (the stat cache keeps this re-check cheap)."""
        again = self.context.select_sources(sources, verb=instruction.keyword, parents=plan.parents)
        if again.content_key != key:
            raise BuildError(f"{instruction.keyword} failed: the build context changed while it "
                             "was being copied; run the build again")

    def _copy_context(self, plan: CopyPlan, rootfs: RootFS) -> None:
        if plan.meter is not None:  # a copy done again (reuse.py's mismatch) counts anew
            plan.meter.reset()
        self.sandbox.call(rootfs, functools.partial(apply_copy, plan), cwd=self.context.root)

    def _copy_reusing(self, plan: CopyPlan, rootfs: RootFS, previous: Path) -> int:
        """The copy, with the files `previous` already holds as wanted hard-linked into the
        upper dir first and skipped by the copier; the plain copy when none can be. A copy
        that would not leave them exactly as linked is redone without reuse."""
        linked = reuse.link_unchanged(plan, self.context.root, previous, rootfs.lowers, rootfs.upper)
        if linked is None:
            self._copy_context(plan, rootfs)
            return 0
        try:
            self._copy_context(replace(plan, reuse=linked.reused), rootfs)
        except ReuseMismatch:
            reuse.check_untouched(linked, rootfs.upper, self.context.root)
            for d in (rootfs.upper, rootfs.work):  # start again from empty dirs
                remove_tree(d)
                d.mkdir()
            self._copy_context(plan, rootfs)
            return 0
        except BaseException:
            reuse.check_untouched(linked, rootfs.upper, self.context.root)
            raise
        reuse.check_untouched(linked, rootfs.upper, self.context.root)
        return len(linked.reused.files)

    def _copy_from(self, plan: CopyPlan, sources: tuple[str, ...], source: CopySource,
                   instruction) -> Callable[[RootFS], None]:
        """Mount the source image read-only beside the target; select there, copy into the target."""
        def execute(rootfs: RootFS) -> None:
            scratch = self.scratch("from")
            mounted = RootFS(source.lowers, *make_overlay_dirs(scratch))
            chosen: list[CopyPlan] = []

            def select() -> None:  # in the child, with the source mounted, before chroot
                image = BuildContext(mounted.merged, image=True)
                chosen.append(replace(plan, sources=image.resolve_sources(
                    sources, verb=instruction.keyword, parents=plan.parents)))

            self.sandbox.call(rootfs, lambda: apply_copy(chosen[0]), cwd=mounted.merged,
                              source=mounted, pre_chroot=select)
        return execute

    # -- WORKDIR -------------------------------------------------------------------------------

    def workdir(self, instruction: Workdir, config: ContainerConfig, scope: metadata.Scope) -> FsStep:
        """WORKDIR: relative paths chain; the dir is created (a layer if it did not exist),
        owned by USER as BuildKit does (see workdir.py)."""
        path = words.expand(instruction.path, scope.expansion_env(config), escape=scope.escape,
                            location=instruction.location)
        path = metadata.resolve_workdir(config.working_dir, path)
        make = functools.partial(make_workdir, path, config.user or None)
        execute = lambda rootfs: self.sandbox.call(rootfs, make)  # noqa: E731
        description: dict[str, Any] = {"workdir": path}
        if config.user:  # only then: the keys of WORKDIRs without USER stay what they were
            description["user"] = config.user
        return FsStep(description, f"WORKDIR {path}", execute, replace(config, working_dir=path),
                      layer_when_unchanged=path != "/")

