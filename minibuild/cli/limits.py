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


_FLAGS = {"memory": "--memory", "pids": "--pids-limit", "cpu": "--cpus"}


def limits_of(memory: str | None, pids_limit: int | None, cpus: str | None):
    """The Limits the flags give (LimitError names a bad one). Rootless, a flag no cgroup can
    apply (no delegated cgroup v2 subtree with its controller) is ignored with one warning
    line, as rootless podman ignores limits on cgroup v1, instead of failing every step."""
    from minibuild.fs import idmap
    from minibuild.sandbox.limits import parse_limits

    limits = parse_limits(memory, pids_limit, cpus)
    if idmap.rootless():
        from minibuild.sandbox.cgroups import unavailable

        ignored = [flag for name, flag in _FLAGS.items() if name in unavailable(limits)]
        if ignored:
            click.echo(f"warning: {', '.join(ignored)} ignored: rootless minibuild has no "
                       "delegated cgroup to apply {} in (run as root, or delegate a cgroup v2 "
                       "subtree with the controller)".format("it" if len(ignored) == 1 else "them"),
                       err=True)
    return limits
