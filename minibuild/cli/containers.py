"""Commands about containers once they exist: ps, stop, pause, unpause, start, rm, logs, diff,
commit (docker's names, flags and output shapes); `run` and `exec` are in run.py."""

from __future__ import annotations

import json
import sys
import time

import click

from minibuild.cli.app import cli, container_records, open_store, store_root


def image_layers(store, manifest):
    """Load a container's image and make sure its layer dirs exist (unpacked once, shared)."""
    image = store.load_image(manifest)
    for layer in image.layers:
        store.ensure_layer(layer)
    return image


# -- ps, stop, start, rm, logs ---------------------------------------------------------------------


def _status_text(records, container) -> str:
    """docker's STATUS column."""
    from minibuild.containers.signals import is_paused
    from minibuild.text import human_age

    state = records.status(container)
    if state == "running":
        up = "Up " + human_age(container.started).removesuffix(" ago")
        return up + " (Paused)" if is_paused(records, container) else up
    if state == "exited":
        return f"Exited ({container.exit_code}) {human_age(container.finished)}"
    return state.capitalize()


_PS_TABLE = ("table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t"
             "{{.Ports}}\\t{{.Names}}")


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="status=STATE, name=TEXT, ancestor=IMAGE, label=KEY[=VALUE], id=PREFIX, "
                   "exited=CODE (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only the ids.")
@click.option("--no-trunc", is_flag=True, help="Whole ids and commands.")
@click.option("--format", "fmt", default="table", show_default=True,
              help="table (default), json, or a Go template as docker takes: '{{.ID}}', "
                   "'table {{.Names}}\\t{{.Status}}', '{{json .}}'.")
@click.pass_context
def ps(ctx, show_all, filters, quiet, no_trunc, fmt) -> None:
    """List containers (running ones, or all with -a)."""
    from minibuild.cli import filters as container_filters, formatting, rows

    records = container_records(ctx)
    wanted = container_filters.parse(filters, container_filters.CONTAINER_KEYS)
    every = records.all()
    states = {c.id: records.status(c) for c in every}
    ancestry = _Ancestry(ctx)
    shown = [c for c in every if (show_all or states[c.id] == "running"
                                  or "status" in wanted or "exited" in wanted)
             and container_filters.container_passes(c, states[c.id], wanted, ancestry.test)]
    if fmt == "json" and not quiet:
        click.echo(json.dumps([{**c.to_json(), "status": _status(records, c)} for c in shown],
                              indent=2))
        return
    made = [rows.ContainerRow(c, states[c.id], _status_text(records, c), no_trunc=no_trunc)
            for c in reversed(shown)]  # newest first, as docker lists them
    template = "{{.ID}}" if quiet else _PS_TABLE if fmt == "table" else fmt
    click.echo(formatting.render(template, made, rows.CONTAINER_HEADERS), nl=False)


class _Ancestry:
    """`ancestor=IMAGE` tests: made from that image, or from one built on it (its layers first);
    the store is opened on the first one."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx
        self.tests: dict = {}

    def test(self, text: str):
        """The test for one image name."""
        if text not in self.tests:
            store = open_store(self.ctx)
            found = store.find(text).descriptor
            chain = tuple(store.load_image(found).config.diff_ids)
            self.tests[text] = lambda c: c.manifest.digest == found.digest or (
                bool(chain) and tuple(c.diff_ids[:len(chain)]) == chain)
        return self.tests[text]


def _status(records, container) -> str:
    """created, running, paused, exited or dead (docker's State.Status)."""
    from minibuild.containers.signals import is_paused

    state = records.status(container)
    return "paused" if state == "running" and is_paused(records, container) else state


@cli.command()
@click.option("-t", "--time", "timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx, timeout, containers) -> None:
    """Stop running containers: SIGTERM to the command, SIGKILL after a timeout."""
    from minibuild.containers import signals

    records = container_records(ctx)
    for text in containers:
        signals.stop(records, records.find(text), timeout)
        click.echo(text)


@cli.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx, containers) -> None:
    """Freeze every process of running containers (their cgroup's freezer)."""
    _each(ctx, containers, "pause")


@cli.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx, containers) -> None:
    """Thaw paused containers."""
    _each(ctx, containers, "unpause")


def _each(ctx, containers, action: str) -> None:
    """signals.<action> on each container named, echoing its name as docker does."""
    from minibuild.containers import signals

    records = container_records(ctx)
    for text in containers:
        getattr(signals, action)(records, records.find(text))
        click.echo(text)


@cli.command()
@click.option("-a", "--attach", is_flag=True,
              help="Print the container's output until it ends; exit with its code.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx, attach, containers) -> None:
    """Start stopped containers again, in the background (their upper dir is kept)."""
    from minibuild.containers import runtime
    from minibuild.containers.records import ContainerError

    records = container_records(ctx)
    store = open_store(ctx)
    if attach and len(containers) > 1:
        raise click.UsageError("you cannot start and attach multiple containers at once")
    for text in containers:
        found = records.find(text)
        if records.status(found) == "running":
            raise ContainerError(f"container {found.name} is already running")
        image_layers(store, found.manifest)
        offset = _log_size(records, found.id)
        runtime.run_detached(store.root, found)
        if not attach:
            click.echo(text)
            continue
        _follow(records, found, offset)
        # the command's end is seen before its supervisor records the exit code (it still
        # removes the cgroup and the mounts): wait for that record
        records.wait_unsupervised(found.id, 10.0)
        ctx.exit(records.load(found.id).exit_code or 0)


def _log_size(records, container_id: str) -> int:
    """How much the container's log holds so far (what `start -a` does not print again)."""
    try:
        return records.log_path(container_id).stat().st_size
    except FileNotFoundError:
        return 0


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", "volumes", is_flag=True,
              help="Also remove its anonymous volumes (named ones stay).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx, force, volumes, containers) -> None:
    """Remove containers and their upper dirs (their writes are gone; images are untouched)."""
    from minibuild.containers import signals
    from minibuild.containers.records import ContainerError
    from minibuild.containers.volumes import Volumes

    records = container_records(ctx)
    for text in containers:
        found = records.find(text)
        if records.status(found) == "running":
            if not force:
                raise ContainerError(f"cannot remove running container {found.name}",
                                     hint=f"stop it first, or use `minibuild rm -f {text}`")
            signals.stop(records, found, timeout=0)
        elif records.supervised(found.id):  # starting or finishing: let its supervisor end
            records.wait_unsupervised(found.id, 10.0)
        records.remove(found.id)
        if volumes:
            Volumes(records.dir.parent).drop_anonymous(found, records.all())
        click.echo(text)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the container runs.")
@click.option("-n", "--tail", default="all", show_default=True,
              help="Only the last N lines (all: every line).")
@click.option("-t", "--timestamps", is_flag=True,
              help="Prefix each line with its time (RFC3339Nano, UTC).")
@click.option("--since", default=None, metavar="TIME",
              help="Only lines since TIME: RFC3339, a Unix time, or a duration ago (10m, 1h30m).")
@click.option("--until", default=None, metavar="TIME", help="Only lines before TIME (as --since).")
@click.argument("container")
@click.pass_context
def logs(ctx, follow, tail, timestamps, since, until, container) -> None:
    """The output of a container (detached or not), as its supervisor logged it."""
    from minibuild.containers.logfile import Printer

    records = container_records(ctx)
    found = records.find(container)
    window = (_moment(since, "--since"), _moment(until, "--until"))
    _follow(records, found, 0, follow=follow, printer=Printer(timestamps),
            tail=_tail_count(tail), window=window)


def _tail_count(tail: str) -> int | None:
    """--tail as a line count (None: all)."""
    if tail == "all":
        return None
    try:
        wanted = int(tail)
    except ValueError:
        raise click.BadParameter(f"{tail!r} (want a number or all)", param_hint="--tail") from None
    return None if wanted < 0 else wanted


def _moment(text: str | None, option: str) -> int | None:
    """A --since/--until value in ns since the epoch."""
    from minibuild.containers.logfile import parse_moment

    if text is None:
        return None
    try:
        return parse_moment(text, time.time_ns())
    except ValueError:
        raise click.BadParameter(f"{text!r} (want RFC3339, a Unix time or a duration like 10m)",
                                 param_hint=option) from None


def _follow(records, found, offset: int, *, follow: bool = True, printer=None,
            tail: int | None = None, window: tuple[int | None, int | None] = (None, None)) -> None:
    """Print the container's log from byte `offset` (a record's start); with follow, until
    the container ends. `tail` and `window` choose among what the log holds already."""
    from minibuild.containers.logfile import Printer, split_records

    printer = printer or Printer(False)
    try:
        log = open(records.log_path(found.id), "rb")
    except FileNotFoundError:
        return
    with log:
        log.seek(offset)
        pending, first = b"", True
        while True:
            data = log.read(65536)
            if data:
                pending += data
                continue
            running = follow and records.status(records.load(found.id)) == "running"
            pending += log.read()
            done, pending = split_records(pending, raw_tail=not running)
            _print(printer.render(_chosen(done, tail if first else None, window)))
            first = False
            if not running:
                return
            time.sleep(0.1)


def _chosen(done, tail: int | None, window: tuple[int | None, int | None]):
    """The records in the time window (a record of unknown time is in any), then the tail."""
    from minibuild.containers.logfile import tail as last_lines

    since, until = window
    kept = [r for r in done if not r.time_ns or (
        (since is None or r.time_ns >= since) and (until is None or r.time_ns < until))]
    return kept if tail is None else last_lines(kept, tail)


def _print(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


# -- diff, commit ----------------------------------------------------------------------------------


@cli.command()
@click.argument("container")
@click.pass_context
def diff(ctx, container) -> None:
    """What a container changed: A added, C changed, D deleted (read from its upper dir)."""
    from minibuild.containers import runtime
    from minibuild.layer.diffview import changes

    root = store_root(ctx)
    records = container_records(ctx)
    found = records.find(container)
    fs = runtime.rootfs(root, found)
    for change in changes(fs.upper, fs.lowers):
        click.echo(change.line())


@cli.command()
@click.option("-m", "--message", default=None, help="Commit message (history comment).")
@click.option("-a", "--author", default=None, help="Author (history and config).")
@click.option("--pause/--no-pause", "-p", "pause", default=True, show_default=True,
              help="Freeze the container's processes while its upper dir is read.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True, help="Layer compression (zstd: smaller, newer clients only).")
@click.argument("container")
@click.argument("reference", required=False)
@click.pass_context
def commit(ctx, message, author, pause, compression, container, reference) -> None:
    """Make a new image from a container: its upper dir becomes a layer on its image."""
    from minibuild.containers.commit import commit_container
    from minibuild.oci.reference import Reference
    from minibuild.layer.compression import Compression

    ref = Reference.parse(reference) if reference else None
    store = open_store(ctx)
    records = container_records(ctx)
    found = records.find(container)
    descriptor = commit_container(store, records, found, message=message, author=author,
                                  pause=pause, compression=Compression.parse(compression))
    if ref is not None:
        store.tag(ref, descriptor)
    else:
        store.add_image(descriptor)  # untagged, it stays (docker's <none>) until rmi or prune
    click.echo(str(store.image_id(descriptor)))  # docker's `commit`: the image ID
