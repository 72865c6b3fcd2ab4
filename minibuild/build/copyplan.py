"""COPY and ADD flags: which each takes, and a COPY/ADD's flags and words as a CopyPlan
(without its sources: the context, a stage or a download gives those)."""

from __future__ import annotations

from typing import Callable

from minibuild.build.context import BuildContext
from minibuild.build.copier import CopyPlan
from minibuild.dockerfile import metadata
from minibuild.dockerfile.filemode import parse_mode
from minibuild.dockerfile.instructions import flag_value, flag_values
from minibuild.dockerfile.suggest import unknown_flag
from minibuild.errors import BuildError, BuildfileError
from minibuild.oci.image import ContainerConfig

# --link: our layers never depend on the base. --parents is COPY's only (the reference).
COPY_FLAGS = {"from", "chown", "chmod", "link", "exclude"}
ADD_FLAGS = COPY_FLAGS | {"checksum", "keep-git-dir", "unpack"}


def fail(instruction, message: str) -> BuildfileError:
    """An error at the instruction's lines."""
    return BuildfileError.at(instruction, message)


def check_flags(instruction, allowed: set[str]) -> None:
    """Refuse a flag the instruction does not know, naming it (and the one it may mean)."""
    for flag in instruction.flags:
        name = flag.removeprefix("--").partition("=")[0]
        if name not in allowed:
            raise fail(instruction, unknown_flag(instruction.keyword, name, allowed))


def copy_plan(instruction, config: ContainerConfig, env, expand: Callable[[str], str],
              from_stage: bool, context: BuildContext, remote: bool,
              unpack: bool | None) -> CopyPlan:
    """A COPY/ADD's flags and words, expanded, as a plan without its sources yet; a bad --chmod
    fails here, at its line, before any copy. `unpack`: ADD's --unpack (None: archives from the
    context are unpacked, remote ones are not)."""
    chown, chmod = flag_value(instruction, "chown"), flag_value(instruction, "chmod")
    plan = CopyPlan(
        sources=(), inline=metadata.inline_files(instruction, env),
        dest=expand(instruction.dest), workdir=config.working_dir or "/",
        chown=expand(chown) if chown else None, chmod=expand(chmod) if chmod else None,
        unpack_archives=not from_stage and (not remote if unpack is None else unpack),
        ignore=None if from_stage or remote else context.ignore, keyword=instruction.keyword,
        exclude=tuple(expand(e) for e in flag_values(instruction, "exclude")),
        parents=flag_bool(instruction, "parents"),
        keep_owner=from_stage,  # BuildKit keeps a stage's owners (the context's become 0:0)
    )
    if plan.chmod is not None:
        try:
            parse_mode(plan.chmod)
        except BuildError as exc:
            raise fail(instruction, exc.message) from None
    return plan


def flag_bool(instruction, name: str) -> bool:
    """A boolean flag: bare `--parents` is true, `--parents=false` false (BuildKit's BoolFlag)."""
    value = flag_value(instruction, name)
    if value is None:
        return False
    if value.lower() in ("", "true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise fail(instruction, f"--{name}={value}: expected true or false")

