"""Runs a plan: each stage from its base, each step in the sandbox, each change a layer.

Orchestration only: the store, the sandbox, the build context and the reporter are injected.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Protocol

from minibuild import metadata, words
from minibuild.copier import CopyPlan, apply_copy
from minibuild.errors import BuildError, BuildfileError, ImageNotFound, MinibuildError
from minibuild.image import Config, Descriptor, History, Image, Layer
from minibuild.instructions import (Add, Arg, Copy, ExecForm, From, Onbuild, Run, ShellForm, Workdir,
                                    flag_value)
from minibuild.plan import Plan, Stage
from minibuild.sandbox import Process, RootFS
from minibuild.snapshot import Compression, LayerWrite, is_empty, write_layer
from minibuild.store import remove_tree
from minibuild.units import human_size


class Reporter(Protocol):
    """Where the engine reports progress; the CLI renders it (rich or plain lines)."""

    def step(self, number: int, total: int, stage: str, text: str) -> None: ...
    def output(self, data: bytes) -> None: ...
    def done(self, seconds: float, note: str) -> None: ...
    def phase(self, text: str) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """How to build: build args, layer compression, RUN network, SOURCE_DATE_EPOCH."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    compression: Compression = Compression.ZSTD
    network: str = "host"
    source_date_epoch: int | None = None


@dataclass
class _State:
    """A stage in progress: the image so far and what its instructions see."""

    image: Image
    scope: metadata.Scope


_ONLY_HEREDOCS = re.compile(r"^\s*(<<-?\s*['\"]?\w+['\"]?\s*)+$")
_COPY_FLAGS = {"from", "chown", "chmod", "link", "checksum", "keep-git-dir", "exclude", "parents"}


class Engine:
    """Builds the stages a plan needs and returns the target's image."""

    def __init__(self, store, sandbox, context, reporter: Reporter, options: BuildOptions) -> None:
        self.store = store
        self.sandbox = sandbox
        self.context = context
        self.reporter = reporter
        self.options = options
        self._number = 0
        self._total = 0
        self._stages: dict[int, Image] = {}
        self._used_args: set[str] = set()

    def build(self, plan: Plan) -> Image:
        """Run every needed stage in order; the target stage's image, dated."""
        self._total = plan.total_steps
        self._plan = plan
        for index in plan.needed:
            self._stages[index] = self._build_stage(plan.stages[index])
        image = self._stages[plan.target]
        return replace(image, config=replace(image.config, created=self._now()))

    def unused_build_args(self, plan: Plan) -> list[str]:
        """--build-arg names no ARG of the build declared (docker warns about these)."""
        declared = {name for name, _ in plan.global_args} | self._used_args
        return sorted(set(self.options.build_args) - declared)

    # -- stages ------------------------------------------------------------------------------

    def _build_stage(self, stage: Stage) -> Image:
        self._announce(stage, stage.origin.original)
        started = time.monotonic()
        base = self._base_image(stage)
        shell = base.config.config.shell or metadata.DEFAULT_SHELL
        state = _State(base, metadata.Scope(shell=tuple(shell), escape=self._plan.escape))
        self.reporter.done(time.monotonic() - started, "")
        for instruction in stage.steps:
            self._announce(stage, instruction.original)
            started = time.monotonic()
            try:
                note = self._step(state, instruction)
            except MinibuildError as exc:
                _locate(exc, instruction)
                raise
            self.reporter.done(time.monotonic() - started, note)
        return state.image

    def _announce(self, stage: Stage, text: str) -> None:
        self._number += 1
        self.reporter.step(self._number, self._total, stage.label, text)

    def _base_image(self, stage: Stage) -> Image:
        """scratch, an earlier stage, or an image in the store."""
        if stage.base == "scratch":
            return Image()
        earlier = self._plan.stage(stage.base)
        if earlier is not None and earlier.index < stage.index and earlier.index in self._stages:
            return self._stages[earlier.index]
        try:
            _, descriptor = self.store.resolve(stage.base)
        except ImageNotFound:
            loc = stage.origin.location
            raise BuildError(f"FROM {stage.base}: image not found in the store "
                             "(build it first, or see `minibuild images`)",
                             file=loc.file, line=loc.line, column=loc.column) from None
        image = self.store.load_image(descriptor)
        if image.config.config.onbuild:
            loc = stage.origin.location
            raise BuildError(f"FROM {stage.base}: the image has ONBUILD triggers, which minibuild "
                             "does not run yet", file=loc.file, line=loc.line, column=loc.column)
        return image

    # -- steps -------------------------------------------------------------------------------

    def _step(self, state: _State, instruction) -> str:
        """Dispatch one instruction; returns a note for the progress line."""
        match instruction:
            case Run():
                return self._run(state, instruction)
            case Copy() | Add():
                return self._copy(state, instruction)
            case Workdir():
                return self._workdir(state, instruction)
            case Onbuild() | From():
                loc = instruction.location
                raise BuildfileError(f"{instruction.keyword} is not supported yet",
                                     file=loc.file, line=loc.line, column=loc.column)
        config, scope, text = metadata.apply(instruction, state.image.config.config, state.scope,
                                             self.options.build_args, dict(self._plan.global_args))
        if isinstance(instruction, Arg):
            self._used_args.update(name for name, _ in instruction.pairs)
        state.scope = scope
        state.image = state.image.with_container_config(config)
        if text is not None:
            state.image = state.image.append(None, self._history(text))
        return ""

    def _run(self, state: _State, run: Run) -> str:
        config = state.image.config.config
        argv, created_by = self._run_argv(run, state.scope)
        process = Process(argv=argv, env=state.scope.process_env(config),
                          cwd=config.working_dir or "/", user=config.user or None,
                          network=self._network(run), hostname="minibuild")

        def execute(rootfs: RootFS) -> None:
            status = self.sandbox.run(rootfs, process, self.reporter.output)
            if status != 0:
                loc = run.location
                raise BuildError(f"step {self._number}/{self._total} `{_short(run.original)}` "
                                 f"failed with exit code {status}", exit_status=status,
                                 file=loc.file, line=loc.line, column=loc.column)

        return self._filesystem_step(state, created_by, execute)

    def _run_argv(self, run: Run, scope: metadata.Scope) -> tuple[tuple[str, ...], str]:
        """The argv of a RUN (heredocs folded into the shell script) and its history text."""
        command = run.command
        if isinstance(command, ShellForm) and run.heredocs:
            if _ONLY_HEREDOCS.match(command.text):
                script = "".join(h.content for h in run.heredocs)
            else:
                bodies = "".join(f"{h.content}{'' if h.content.endswith(chr(10)) or not h.content else chr(10)}"
                                 f"{h.delimiter}\n" for h in run.heredocs)
                script = f"{command.text}\n{bodies}"
            command = ShellForm(script)
        argv = metadata.command_argv(command, scope)
        if isinstance(command, ExecForm):
            return argv, metadata.describe_command("RUN", command)
        return argv, "RUN " + " ".join(argv)

    def _network(self, instruction) -> str:
        value = flag_value(instruction, "network") or self.options.network
        if value == "default":
            value = "host"
        if value not in ("host", "none"):
            loc = instruction.location
            raise BuildfileError(f"--network={value} is not supported (use host or none)",
                                 file=loc.file, line=loc.line, column=loc.column)
        return value

    def _copy(self, state: _State, instruction) -> str:
        keyword = instruction.keyword
        loc = instruction.location
        self._check_flags(instruction, _COPY_FLAGS, keyword)
        if flag_value(instruction, "from") is not None:
            raise BuildfileError(f"{keyword} --from is not supported yet", file=loc.file,
                                 line=loc.line, column=loc.column)
        config = state.image.config.config
        env = state.scope.expansion_env(config)
        expand = functools.partial(words.expand, env=env, escape=state.scope.escape, location=loc)
        sources = tuple(expand(s) for s in instruction.paths)
        dest = expand(instruction.dest)
        selection = self.context.select_sources(sources, verb=keyword) if sources else None
        chown, chmod = flag_value(instruction, "chown"), flag_value(instruction, "chmod")
        plan = CopyPlan(
            sources=selection.sources if selection else (),
            inline=tuple((h.delimiter, h.content.encode()) for h in instruction.heredocs),
            dest=dest, workdir=config.working_dir or "/",
            chown=expand(chown) if chown else None, chmod=expand(chmod) if chmod else None,
            unpack_archives=isinstance(instruction, Add), ignore=self.context.ignore,
        )
        shown = " ".join([*(f"--chown={plan.chown}",) * bool(plan.chown),
                          *(f"--chmod={plan.chmod}",) * bool(plan.chmod), *sources,
                          *(f"<<{h.delimiter}" for h in instruction.heredocs), dest])

        def execute(rootfs: RootFS) -> None:
            self.sandbox.call(rootfs, functools.partial(apply_copy, plan), cwd=self.context.root)

        return self._filesystem_step(state, f"{keyword} {shown}", execute)

    def _workdir(self, state: _State, instruction: Workdir) -> str:
        config = state.image.config.config
        path = words.expand(instruction.path, state.scope.expansion_env(config),
                            escape=state.scope.escape, location=instruction.location)
        path = metadata.resolve_workdir(config.working_dir, path)
        state.image = state.image.with_container_config(replace(config, working_dir=path))

        def execute(rootfs: RootFS) -> None:
            self.sandbox.call(rootfs, functools.partial(os.makedirs, path, 0o755, True))

        return self._filesystem_step(state, f"WORKDIR {path}", execute)

    def _check_flags(self, instruction, allowed: set[str], keyword: str) -> None:
        for flag in instruction.flags:
            name = flag.removeprefix("--").partition("=")[0]
            if name not in allowed:
                loc = instruction.location
                raise BuildfileError(f"unknown flag --{name} for {keyword}", file=loc.file,
                                     line=loc.line, column=loc.column)

    # -- the one place that turns a step's writes into a layer -------------------------------

    def _filesystem_step(self, state: _State, created_by: str,
                         execute: Callable[[RootFS], None]) -> str:
        """Mount the image's layers under a fresh upper dir, run, and snapshot the upper dir."""
        scratch = self.store.scratch("step")
        try:
            dirs = {name: scratch / name for name in ("upper", "work", "merged")}
            for d in dirs.values():
                d.mkdir()
            lowers = tuple(self.store.ensure_layer(layer) for layer in reversed(state.image.layers))
            execute(RootFS(lowers, dirs["upper"], dirs["work"], dirs["merged"]))
            self.reporter.phase("snapshot")
            layer, written = self._snapshot(dirs["upper"])
            state.image = state.image.append(layer, self._history(created_by))
            if written is None:
                return "no changes"
            return f"{human_size(written.summary.content_size)} in layer {layer.diff_id.short}"
        finally:
            remove_tree(scratch)

    def _snapshot(self, upper: Path) -> tuple[Layer | None, LayerWrite | None]:
        """The upper dir as a stored layer (None when the step changed nothing)."""
        if is_empty(upper):
            return None, None
        with self.store.blob_writer() as writer:
            written = write_layer(upper, writer, compression=self.options.compression,
                                  clamp_mtime=self.options.source_date_epoch)
            digest, size = writer.commit()
        self.store.save_summary(written.diff_id, written.summary)
        self.store.adopt_layer(written.diff_id, upper)
        return Layer(Descriptor(written.media_type, digest, size), written.diff_id), written

    def _history(self, created_by: str) -> History:
        return History(created_by=created_by, created=self._now())

    def _now(self) -> str:
        """RFC 3339 UTC: SOURCE_DATE_EPOCH when set, else the wall clock."""
        epoch = self.options.source_date_epoch
        moment = datetime.fromtimestamp(epoch if epoch is not None else time.time(), timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if epoch is not None else "%Y-%m-%dT%H:%M:%S.%fZ")


def _locate(exc: MinibuildError, instruction) -> None:
    """Give an error raised below the engine (context, copier, sandbox) its Buildfile line."""
    if exc.file is None:
        loc = instruction.location
        exc.file, exc.line, exc.column = loc.file, loc.line, loc.column


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
