"""Commands about a container's processes and name: kill, wait, rename, top (docker's names,
flags and output shapes)."""

from __future__ import annotations

import subprocess
import time

import click

from minibuild.cli.app import cli, container_records


def _running(records, text: str, verb: str):
    """The container named `text`, which must be running (docker's error otherwise)."""
    from minibuild.containers.records import ContainerError

    found = records.find(text)
    if records.status(found) != "running":
        raise ContainerError(f"cannot {verb} container: {text}: container {found.short_id} is "
                             "not running")
    return found


@cli.command()
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True,
              help="Signal to send: a name (TERM, SIGHUP) or a number.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx, signal_name, containers) -> None:
    """Send a signal to running containers (SIGKILL ends every process of each)."""
    from minibuild.containers import signals

    number = signals.stop_signal(signal_name)
    records = container_records(ctx)
    for text in containers:
        signals.send(_running(records, text, "kill"), number)
        click.echo(text)


@cli.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx, containers) -> None:
    """Wait until containers stop, then print each one's exit code."""
    records = container_records(ctx)
    for text in containers:
        found = records.find(text)
        while records.status(found) in ("running", "created") or records.supervised(found.id):
            time.sleep(0.1)
            found = records.load(found.id)
        click.echo(str(found.exit_code if found.exit_code is not None else 0))


@cli.command()
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx, container, new_name) -> None:
    """Rename a container (running or not)."""
    records = container_records(ctx)
    records.rename(records.find(container), new_name)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("container")
@click.argument("ps_options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx, container, ps_options) -> None:
    """The processes of a running container, as the host's `ps` shows them (default: -ef)."""
    from minibuild.containers import signals

    found = _running(container_records(ctx), container, "top")
    pids = {str(p) for p in signals.namespace_pids(found.pid)}  # the command is pid 1 inside
    click.echo("\n".join(pid_rows(_ps(ps_options or ("-ef",)), pids)))


def _ps(options: tuple[str, ...]) -> str:
    """The host's `ps` output with these options."""
    from minibuild.containers.records import ContainerError

    done = subprocess.run(["ps", *options], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerError(f"ps {' '.join(options)} failed: {done.stderr.strip()}")
    return done.stdout


def pid_rows(output: str, pids: set[str]) -> list[str]:
    """`ps` output kept to its header and the rows whose PID column is one of `pids`."""
    from minibuild.containers.records import ContainerError

    lines = output.splitlines()
    if not lines or "PID" not in lines[0].split():
        raise ContainerError("couldn't find the PID field in the ps output",
                             hint="pass ps options that print a PID column")
    column = lines[0].split().index("PID")
    rows = [line for line in lines[1:]
            if len(line.split()) > column and line.split()[column] in pids]
    return [lines[0], *rows]
