"""Pure planning: split a Buildfile into stages, scope the ARGs before FROM, pick the stages to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from minibuild.dockerfile import buildargs, shell as words, suggest
from minibuild.errors import BuildfileError
from minibuild.dockerfile.instructions import Add, Arg, Copy, Env, From, Run, flag_value, flag_values
from minibuild.dockerfile.parser import Buildfile
from minibuild.dockerfile.runmount import mount_from_refs


@dataclass(frozen=True)
class Stage:
    """One FROM and the instructions up to the next FROM."""

    index: int
    name: str | None          # lower-cased `AS name`
    base: str                 # FROM's image after expanding the global ARGs
    origin: From
    steps: tuple              # the instructions after FROM

    @property
    def label(self) -> str:
        """How progress output names the stage."""
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Plan:
    """The stages of a build, the global ARGs, and which stages the target needs, in order.
    `automatic` holds the global scope's automatic args (TARGETPLATFORM..., TARGETSTAGE)."""

    stages: tuple[Stage, ...]
    global_args: tuple[tuple[str, str | None], ...]
    target: int
    needed: tuple[int, ...]
    escape: str
    file: str
    automatic: tuple[tuple[str, str], ...] = ()

    def global_values(self) -> dict[str, str]:
        """The global scope: automatic args, then the ARGs before FROM that have a value."""
        return {**dict(self.automatic), **dict(_defined(self.global_args))}

    def stage(self, ref: str) -> Stage | None:
        """The stage a `--from`/FROM names (by `AS` name or index), or None."""
        lowered = ref.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    def did_you_mean(self, ref: str) -> str:
        """` (did you mean NAME?)` when `ref` looks like a mistyped stage name, else ""."""
        return suggest.did_you_mean(ref.lower(), [s.name for s in self.stages if s.name])

    @property
    def total_steps(self) -> int:
        """Instructions the build will execute (FROM included)."""
        return sum(1 + len(self.stages[i].steps) for i in self.needed)


def make_plan(buildfile: Buildfile, build_args: Mapping[str, str], target: str | None = None) -> Plan:
    """Stages with FROM expanded, and the stages `target` (default: the last) depends on."""
    automatic = buildargs.automatic_args(_target_name(buildfile, target))
    automatic.update((k, build_args[k]) for k in list(automatic) if k in build_args)  # BuildKit's
    global_args, index = _global_args(buildfile, build_args, automatic)
    rest = buildfile.instructions[index:]
    scope = {**automatic, **dict(_defined(global_args))}
    stages = _split_stages(rest, scope, buildfile.escape)
    shape = (buildfile.escape, buildfile.file, tuple(automatic.items()))
    plan = Plan(stages, global_args, len(stages) - 1, (), *shape)
    if target is not None:
        chosen = plan.stage(target)
        if chosen is None:
            names = ", ".join(s.name for s in stages if s.name) or "none"
            raise BuildfileError(f"target stage {target!r} could not be found"
                                 f"{plan.did_you_mean(target)} (stages: {names})",
                                 file=buildfile.file)
        plan = Plan(stages, global_args, chosen.index, (), *shape)
    needed = _needed(plan, plan.target, build_args)
    return Plan(stages, global_args, plan.target, needed, *shape)


def _target_name(buildfile: Buildfile, target: str | None) -> str:
    """TARGETSTAGE: the --target as given, else the last stage's name, else "default"."""
    if target:
        return target
    froms = [i for i in buildfile.instructions if isinstance(i, From)]
    name = froms[-1].stage_name if froms else None
    return name.lower() if name else "default"


def _defined(args: tuple[tuple[str, str | None], ...]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in args if v is not None]


def _global_args(buildfile: Buildfile, build_args: Mapping[str, str],
                 automatic: Mapping[str, str]):
    """ARGs before the first FROM, with --build-arg overrides (their defaults see the automatic
    args); and where FROM starts."""
    values: dict[str, str | None] = {}
    for index, instruction in enumerate(buildfile.instructions):
        if isinstance(instruction, From):
            return tuple(values.items()), index
        if not isinstance(instruction, Arg):
            raise BuildfileError.at(instruction,
                                    "the first instruction must be FROM (or ARG before FROM)")
        for name, default in instruction.pairs:
            if name in build_args:
                values[name] = build_args[name]
            elif default is not None:
                env = {**automatic, **{k: v for k, v in values.items() if v is not None}}
                values[name] = words.expand(default, env, escape=buildfile.escape,
                                            location=instruction.location)
            else:
                values.setdefault(name, None)
    raise BuildfileError("no FROM instruction", file=buildfile.file)


def _split_stages(instructions, env: dict[str, str], escape: str) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    current: list = []
    for instruction in instructions:
        if isinstance(instruction, From):
            if stages:
                stages[-1] = _with_steps(stages[-1], current)
            current = []
            _check_from_flags(instruction, env, escape)
            base = words.expand(instruction.image, env, escape=escape, location=instruction.location)
            name = instruction.stage_name.lower() if instruction.stage_name else None
            if name is not None and any(s.name == name for s in stages):
                raise BuildfileError.at(instruction, f"duplicate stage name {name!r}")
            stages.append(Stage(len(stages), name, base, instruction, ()))
        else:
            current.append(instruction)
    stages[-1] = _with_steps(stages[-1], current)
    return tuple(stages)


def _check_from_flags(instruction: From, env: dict[str, str], escape: str) -> None:
    """FROM takes only --platform, which must name this machine's platform once expanded
    (`FROM --platform=$BUILDPLATFORM` is the common use)."""
    for flag in instruction.flags:
        name = flag.removeprefix("--").partition("=")[0]
        if name != "platform":
            raise BuildfileError.at(instruction, suggest.unknown_flag("FROM", name, {"platform"}))
    wanted = flag_value(instruction, "platform")
    if wanted is not None:
        buildargs.check_platform(words.expand(wanted, env, escape=escape,
                                              location=instruction.location), instruction)


def _with_steps(stage: Stage, steps: list) -> Stage:
    return Stage(stage.index, stage.name, stage.base, stage.origin, tuple(steps))


def _needed(plan: Plan, target: int, build_args: Mapping[str, str]) -> tuple[int, ...]:
    """The target and, transitively, the stages it uses by FROM, COPY --from or a RUN --mount
    from=, in order."""
    seen: set[int] = set()
    todo = [target]
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        stage = plan.stages[index]
        refs = [stage.base] + [flag_value(s, "from") or "" for s in stage.steps
                               if isinstance(s, (Copy, Add))]
        refs += _mount_refs(stage, plan, build_args)
        for ref in refs:
            used = plan.stage(ref) if ref else None
            if used is not None and used.index < index:
                todo.append(used.index)
    return tuple(sorted(seen))


def _mount_refs(stage: Stage, plan: Plan, build_args: Mapping[str, str]) -> list[str]:
    """The `from=` of each RUN --mount of a stage, expanded as the step will expand it (the
    step expands every mount option with the ARGs and ENV in scope): with the stage's own ARG
    and ENV lines. A base image's ENV is not known yet; such a name stays as written."""
    global_args = plan.global_values()
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    refs: list[str] = []

    def expand(word: str, location) -> str:
        try:
            return words.expand(word, {**args, **env}, escape=plan.escape, location=location)
        except BuildfileError:
            return word  # the step reports it, at its line

    for step in stage.steps:
        if isinstance(step, Arg):
            for name, default in step.pairs:  # metadata._arg_value's order
                if name in build_args:
                    args[name] = build_args[name]
                elif default is not None:
                    args[name] = expand(default, step.location)
                elif global_args.get(name) is not None:
                    args[name] = global_args[name]
        elif isinstance(step, Env):
            env.update([(k, expand(v, step.location)) for k, v in step.pairs])
        elif isinstance(step, Run):
            refs += mount_from_refs(flag_values(step, "mount"),
                                    lambda word, loc=step.location: expand(word, loc))
    return refs
