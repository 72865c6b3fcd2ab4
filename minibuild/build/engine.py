"""Runs a plan: each stage from its base, each step through the cache or the sandbox, each
filesystem change a layer.

Orchestration only: the store, the sandbox, the build context and the reporter are injected;
steps.py prepares RUN/COPY/ADD/WORKDIR, metadata.py applies the config instructions, layermaker.py
runs a filesystem step and stores its layer.
"""

from __future__ import annotations

import contextlib
import errno

import functools
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Mapping

from minibuild.dockerfile import metadata
from minibuild.dockerfile.buildargs import is_builtin
from minibuild.build.cache import Cache, CacheEntry, step_key
from minibuild.build.context import BuildContext
from minibuild.build.layermaker import LayerMaker
from minibuild.errors import BuildError, BuildfileError, ImageNotFound, MinibuildError
from minibuild.oci.image import Descriptor, History, Image
from minibuild.oci.reference import Reference
from minibuild.dockerfile.instructions import Add, Arg, Copy, From, Run, Workdir, flag_value
from minibuild.build.cachemounts import cache_mount_dir
from minibuild.build.ports import BuildStore, Reporter, Runner, StepCache
from minibuild.dockerfile.plan import Plan, Stage
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.layer.compression import Compression
from minibuild.build.steps import CopySource, FsStep, StepFactory


@dataclass(frozen=True)
class BuildOptions:
    """How to build: build args, compression, RUN network, SOURCE_DATE_EPOCH, cache, squash,
    the secrets RUN --mount=type=secret may use."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    compression: Compression = Compression.GZIP
    network: str = "default"
    allow_host_network: bool = False  # RUN --network=host permitted (--allow network.host)
    source_date_epoch: int | None = None
    no_cache: bool = False
    squash: bool = False
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    allow_insecure: bool = False  # RUN --security=insecure permitted (--allow security.insecure)
    pull: str = "missing"  # --pull: FROM host/repo pulled when missing, always, or never


@dataclass
class _State:
    """A stage in progress: the image so far, what its instructions see, its cache key."""

    image: Image
    scope: metadata.Scope
    key: str
    base: Image


@dataclass(frozen=True)
class StageResult:
    """A finished stage: its image, the cache key of its last step, the image it started from,
    and the scope its last step saw (a stage based on it inherits its ARGs)."""

    image: Image
    key: str
    base: Image
    scope: metadata.Scope | None = None


class Engine:
    """Builds the stages a plan needs and returns the target's image."""

    def __init__(self, store: BuildStore, sandbox: Runner, context: BuildContext,
                 reporter: Reporter, options: BuildOptions, cache: StepCache | None = None,
                 puller: Callable[[str], Descriptor] | None = None) -> None:
        self.store = store
        self.puller = puller  # fetches an image the store lacks (None: the store only)
        self.reporter = reporter
        self.options = options
        self.cache: StepCache = cache if cache is not None else Cache(store)  # the memo wraps it
        self.steps = StepFactory(sandbox, context, reporter.output, store.scratch, options.network,
                                 cache_mounts=cache_mount_dir(store.root), secrets=options.secrets,
                                 allow_insecure=options.allow_insecure,
                                 allow_host_network=options.allow_host_network)
        self.layers = LayerMaker(store, reporter, options.compression, options.source_date_epoch)
        self._number = 0
        self._total = 0
        self._results: dict[int, StageResult] = {}
        self._building: list[int] = []  # the stages under way, the innermost last
        self._used_args: set[str] = set()
        self._plan: Plan | None = None
        self.images_used: list[Descriptor] = []  # store images FROM / COPY --from resolved to

    def build(self, plan: Plan) -> Image:
        """Run every needed stage in order; the target stage's image, dated."""
        self._total = plan.total_steps
        self._plan = plan
        for index in plan.needed:
            if index not in self._results:  # an ONBUILD trigger may have needed it already
                self._results[index] = self._build_stage(plan.stages[index])
        result = self._results[plan.target]
        image = self.layers.squash(result.image, result.base) if self.options.squash else result.image
        return replace(image, config=replace(image.config, created=self._image_created(image)))

    def unused_build_args(self, plan: Plan) -> list[str]:
        """--build-arg names no ARG of the build declared (docker warns about these)."""
        declared = {name for name, _ in plan.global_args} | self._used_args
        return sorted(n for n in set(self.options.build_args) - declared if not is_builtin(n))

    # -- stages ------------------------------------------------------------------------------

    def _build_stage(self, stage: Stage) -> StageResult:
        self._building.append(stage.index)
        try:
            return self._run_stage(stage)
        finally:
            self._building.pop()

    def _run_stage(self, stage: Stage) -> StageResult:
        self._announce(stage, self._from_text(stage))
        started = time.monotonic()
        base, base_key = self._base_image(stage)
        base = base.with_container_config(metadata.base_config(base.config.config,
                                                               stage.base == "scratch"))
        shell = base.config.config.shell or metadata.DEFAULT_SHELL
        seed = step_key("", {"base": base_key, "compression": self.options.compression.value,
                             "epoch": self.options.source_date_epoch})
        scope = metadata.Scope.for_stage(shell, self._plan.escape, self.options.build_args)
        scope = scope.inheriting(self._earlier_scope(stage))
        state = _State(base, scope, seed, base)
        self.reporter.done(time.monotonic() - started, "")
        for instruction in self._triggers(state, stage) + list(stage.steps):
            self._announce(stage, instruction.original)
            started = time.monotonic()
            try:
                note = self._step(state, instruction)
            except MinibuildError as exc:
                _locate(exc, instruction)
                raise
            self.reporter.done(time.monotonic() - started, note)
        return StageResult(state.image, state.key, state.base, state.scope)

    def _triggers(self, state: _State, stage: Stage) -> list:
        """The base image's ONBUILD triggers, parsed, to run right after FROM (not inherited
        further: the new image's config drops them, as docker does)."""
        from minibuild.dockerfile import parser

        triggers = state.image.config.config.onbuild
        if not triggers:
            return []
        state.image = state.image.with_container_config(replace(state.image.config.config, onbuild=()))
        loc = stage.origin.location
        parsed = []
        for text in triggers:
            try:
                instruction = parser.parse(f"FROM scratch\n{text}\n", loc.file).instructions[1]
            except MinibuildError as exc:
                raise BuildError.at(loc, f"FROM {stage.base}: bad ONBUILD trigger {text!r}: "
                                         f"{exc.message}") from None
            # Errors of a trigger point at the FROM line that pulled it in.
            parsed.append(replace(instruction, location=loc, original=f"ONBUILD {text}"))
        self._total += len(parsed)
        return parsed

    def _from_text(self, stage: Stage) -> str:
        """The progress text of a stage's FROM: the image's full name, as BuildKit shows it
        (`FROM docker.io/library/debian:12`, global ARGs expanded); as written for scratch,
        an earlier stage, or a name that does not parse (its error comes when resolved)."""
        if stage.base == "scratch" or self._plan.stage(stage.base) is not None:
            return stage.origin.original
        try:
            return f"FROM {Reference.parse(stage.base).normalized()}"
        except MinibuildError:
            return stage.origin.original

    def _announce(self, stage: Stage, text: str) -> None:
        self._number += 1
        self.reporter.step(self._number, self._total, stage.label, text)

    def _earlier_scope(self, stage: Stage) -> metadata.Scope | None:
        """The final scope of the earlier stage this one is based on (FROM that stage), if any."""
        earlier = self._plan.stage(stage.base)
        if earlier is None or earlier.index >= stage.index or earlier.index not in self._results:
            return None
        return self._results[earlier.index].scope

    def _base_image(self, stage: Stage) -> tuple[Image, str]:
        """scratch, an earlier stage, or an image in the store; with what identifies it."""
        if stage.base == "scratch":
            return Image(), "scratch"
        earlier = self._plan.stage(stage.base)
        if earlier is not None and earlier.index < stage.index and earlier.index in self._results:
            result = self._results[earlier.index]
            return result.image, f"stage:{result.key}"
        descriptor = self._find_image(stage.base, stage.origin)
        self.images_used.append(descriptor)
        return self.store.load_image(descriptor), f"image:{descriptor.digest}"

    def _find_image(self, text: str, instruction, what: str | None = None) -> Descriptor:
        """An image for FROM, `COPY --from` or a RUN --mount's from=: the store's, else pulled
        by the engine's puller (a short name from docker.io or the search registries, as docker
        does; `--pull=always` pulls even what the store has, `never` never pulls); without a
        puller, or when the pull fails, an error at the instruction's line."""
        if self.puller is None or self.options.pull == "never":
            return self._resolve_image(text, instruction, what)
        if self.options.pull != "always":
            try:
                return self.store.resolve(text)[1]
            except ImageNotFound:
                pass
        try:
            return self.puller(text)
        except ImageNotFound as exc:  # the puller's: why the registries could not give it
            what = (what or f"{instruction.keyword} {text}: image not found in the store") \
                + self._plan.did_you_mean(text)
            raise BuildError.at(instruction, f"{what}, and {exc.message}", hint=exc.hint) from None
        except MinibuildError as exc:
            _locate(exc, instruction)
            raise

    def _resolve_image(self, text: str, instruction, what: str | None = None) -> Descriptor:
        """An image of the store by reference, or a clear error at the instruction's line."""
        try:
            return self.store.resolve(text)[1]
        except ImageNotFound:
            what = (what or f"{instruction.keyword} {text}: image not found in the store") \
                + self._plan.did_you_mean(text)
            raise BuildError.at(instruction,
                                f"{what} (build it first, or see `minibuild images`)") from None

    # -- steps -------------------------------------------------------------------------------

    def _step(self, state: _State, instruction) -> str:
        """Dispatch one instruction; returns a note for the progress line."""
        config, scope = state.image.config.config, state.scope
        match instruction:
            case Run():
                label = f"step {self._number}/{self._total}"
                source_of = functools.partial(self._source, instruction=instruction, run=True)
                return self._fs_step(state, self.steps.run(instruction, config, scope, label, source_of))
            case Copy() | Add():
                source = self._copy_source(instruction)
                with _path_limit(instruction):
                    return self._fs_step(state, self.steps.copy(instruction, config, scope, source))
            case Workdir():
                return self._fs_step(state, self.steps.workdir(instruction, config, scope))
            case From():
                raise BuildfileError.at(instruction, f"{instruction.keyword} is not supported yet")
        return self._metadata_step(state, instruction)

    def _metadata_step(self, state: _State, instruction) -> str:
        """ENV, LABEL, CMD...: a new config and a history entry (dated from the cache)."""
        config, scope, text = metadata.apply(instruction, state.image.config.config, state.scope,
                                             self.options.build_args, self._plan.global_values())
        if isinstance(instruction, Arg):
            self._used_args.update(name for name, _ in instruction.pairs)
        state.scope = scope
        state.image = state.image.with_container_config(config)
        state.key = step_key(state.key, {"meta": instruction.original, "config": config.to_json(),
                                         "args": [list(a) for a in scope.args],
                                         "shell": list(scope.shell)})
        if text is None:
            return ""
        entry = None if self.options.no_cache else self.cache.get(state.key)
        history = entry.history if entry is not None else self._history(text)
        state.image = state.image.append(None, history)
        if entry is None:
            self.cache.put(state.key, CacheEntry(None, state.image.config.history[-1]))
        return ""

    def _copy_source(self, instruction) -> CopySource | None:
        """Where `COPY --from=NAME` reads: an earlier stage by name or index, else an image."""
        name = flag_value(instruction, "from")
        if name is None:
            return None
        return self._source(name, instruction)

    def _source(self, name: str, instruction, run: bool = False) -> CopySource:
        """An earlier stage by name or index, else an image of the store: its layer dirs
        (for `COPY --from`, and a `RUN --mount` bind's `from=`)."""
        flag = "RUN --mount from=" if run else f"{instruction.keyword} --from="
        stage = self._plan.stage(name)
        if stage is not None:
            if stage.index not in self._results:
                self._build_for(stage, instruction, f"{flag}{name}", "mount" if run else "copy from")
            result = self._results[stage.index]
            image, key = result.image, f"stage:{result.key}"
        else:
            missing = f"{flag}{name}: no stage or image of that name in the store" if run else None
            descriptor = self._find_image(name, instruction, missing)
            self.images_used.append(descriptor)
            image, key = self.store.load_image(descriptor), f"image:{descriptor.digest}"
        lowers = tuple(self.store.ensure_layer(layer) for layer in reversed(image.layers))
        return CopySource(name, key, lowers)

    def _build_for(self, stage: Stage, instruction, what: str, verb: str) -> None:
        """Build an earlier stage the plan did not need: only for an ONBUILD trigger, whose
        stages the plan cannot know (BuildKit's initOnBuildTriggers makes the stage a
        dependency once the base image is read; it must be defined before the stage)."""
        if not _is_trigger(instruction) or stage.index >= self._building[-1]:
            raise BuildfileError.at(instruction, f"{what}: a stage can only {verb} an earlier stage")
        self._total += 1 + len(stage.steps)
        self._results[stage.index] = self._build_stage(stage)

    def _fs_step(self, state: _State, step: FsStep) -> str:
        """A filesystem step through the cache: reuse its layer, or run it and remember it."""
        if step.config is not None:
            state.image = state.image.with_container_config(step.config)
        # A COPY's shape: the same step on the same layers, whatever the content (see reuse.py).
        shape = None if step.reuse is None else step_key(state.key, {
            "reuse": step.reuse.shape, "lowers": [str(l.diff_id) for l in state.image.layers]})
        state.key = step_key(state.key, step.description)
        entry = None if self.options.no_cache else self.cache.get(state.key)
        if entry is not None and entry.layer is None and step.layer_when_unchanged:
            entry = None  # recorded before unchanged steps made an empty layer: run it again
        if entry is not None:
            state.image = state.image.append(entry.layer, entry.history)
            return "CACHED"
        previous = None
        if shape is not None and not self.options.no_cache:
            previous = self.cache.get_copy(shape)
        layer, note = self.layers.run(state.image, step, previous)
        state.image = state.image.append(layer, self._history(step.created_by))
        self.cache.put(state.key, CacheEntry(layer, state.image.config.history[-1]))
        if shape is not None and layer is not None:
            self.cache.put_copy(shape, layer.diff_id)
        return note

    # -- time ----------------------------------------------------------------------------------

    def _history(self, created_by: str) -> History:
        return History(created_by=created_by, created=self._now())

    def _image_created(self, image: Image) -> str:
        """The image's date: SOURCE_DATE_EPOCH, else its last step's (stable on a cached rebuild)."""
        if self.options.source_date_epoch is None and image.config.history:
            last = image.config.history[-1].created
            if last:
                return last
        return self._now()

    def _now(self) -> str:
        """RFC 3339 UTC: SOURCE_DATE_EPOCH when set, else the wall clock."""
        epoch = self.options.source_date_epoch
        moment = datetime.fromtimestamp(epoch if epoch is not None else time.time(), timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if epoch is not None else "%Y-%m-%dT%H:%M:%S.%fZ")


def _is_trigger(instruction) -> bool:
    """An ONBUILD trigger of the base image (_triggers gives them this text)."""
    return instruction.original.startswith("ONBUILD ")


def _locate(exc: MinibuildError, instruction) -> None:
    """Give an error raised below the engine (context, copier, sandbox) its Buildfile line."""
    if exc.file is None:
        exc.locate(instruction)


@contextlib.contextmanager
def _path_limit(instruction):
    """A path longer than the kernel's PATH_MAX as one line at the COPY/ADD, not an internal
    error: dirs are walked and copied at any depth, but a source *named* past PATH_MAX (or a
    wildcard resolved there) is still looked up by path."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        where = exc.filename if isinstance(exc.filename, str) else ""
        raise BuildError.at(instruction, f"{instruction.keyword} failed: a path is longer than "
                            f"the kernel allows (PATH_MAX, 4096 bytes): "
                            f"…{where[-60:]}") from None
