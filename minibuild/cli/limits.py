"""docker's resource flags, shared by `build` and `run`: --memory, --pids-limit, --cpus."""

from __future__ import annotations

from collections.abc import Callable

import click

_OPTIONS = (
    click.option("-m", "--memory", default=None, metavar="SIZE",
                 help="Memory limit (e.g. 512m, 1g; as much swap again), as docker's."),
    click.option("--pids-limit", "pids_limit", type=int, default=None, metavar="N",
                 help="Most processes and threads at once (-1: unlimited)."),
    click.option("--cpus", default=None, metavar="N",
                 help="CPU time, in CPUs (e.g. 1.5)."),
)


def limit_options(command: Callable) -> Callable:
    """Add --memory, --pids-limit and --cpus to a command (as memory, pids_limit, cpus)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def limits_of(memory: str | None, pids_limit: int | None, cpus: str | None):
    """The Limits the flags give (LimitError names a bad one)."""
    from minibuild.sandbox.limits import parse_limits

    return parse_limits(memory, pids_limit, cpus)
