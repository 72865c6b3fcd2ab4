"""Commands about containers and storage: run, exec, ps, stop, start, rm, logs, diff, commit,
rmi, prune, df, layers (docker's names, flags and output shapes)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from minibuild.cli.app import cli, open_store

_PASS_THROUGH = {"allow_interspersed_args": False}  # `run IMAGE sh -c ...`: -c is the command's


def _root(ctx: click.Context) -> Path:
    """The store root, without opening the store (no locks taken)."""
    from minibuild.store.paths import default_root

    return Path(ctx.find_root().obj.get("root") or default_root())


def _records(ctx: click.Context):
    from minibuild.containers.records import Containers

    return Containers(_root(ctx))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by three spaces, as docker prints them."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [header, *rows])


def _image_layers(store, manifest):
    """Load a container's image and make sure its layer dirs exist (unpacked once, shared)."""
    image = store.load_image(manifest)
    for layer in image.layers:
        store.ensure_layer(layer)
    return image


# -- run, exec -------------------------------------------------------------------------------------


# -h is --hostname there, as in docker; --help stays
_RUN_SETTINGS = {**_PASS_THROUGH, "help_option_names": ["--help"]}


@cli.command(context_settings=_RUN_SETTINGS)
@click.option("--rm", "auto_remove", is_flag=True,
              help="Remove the container (and its anonymous volumes) when it exits.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass ours through).")
@click.option("-t", "--tty", "tty_", is_flag=True, help="Give the command a terminal (a pty).")
@click.option("--name", default="", help="Name the container.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable (repeatable); -e KEY takes ours.")
@click.option("--env-file", "env_files", multiple=True, metavar="FILE",
              help="Read KEY=VALUE lines (# comments; a bare KEY takes ours); -e wins.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="User: name, uid, name:group or uid:gid.")
@click.option("-h", "--hostname", default=None, help="The container's hostname (default: its "
              "short id).")
@click.option("--network", type=click.Choice(["host", "none"]), default="host", show_default=True,
              help="host: the host's network; none: only loopback.")
@click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:CONTAINER",
              help="Accepted and ignored with a warning: containers use the host's network "
                   "(or none), so there is nothing to map.")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:OPTS]",
              help="Bind a host path (absolute, or ./relative) or mount a named volume on DST; "
                   "`-v DST` makes an anonymous volume. OPTS: ro, rw, nocopy (z, Z ignored).")
@click.option("--mount", "mounts", multiple=True,
              metavar="type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]",
              help="docker's long form of -v and --tmpfs.")
@click.option("--tmpfs", "tmpfs", multiple=True, metavar="DST[:size=N,mode=OCTAL,exec]",
              help="A fresh tmpfs on DST (noexec unless `exec`).")
@click.option("--entrypoint", default=None, help="Replace the image's ENTRYPOINT (and its CMD).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, auto_remove, detach, interactive, tty_, name, env, env_files, workdir, user,
        hostname, network, publish, volumes, mounts, tmpfs, entrypoint, image, command) -> None:
    """Run a command in a new container: the image's shared layers under its own upper dir."""
    from minibuild.containers import runflags, runtime
    from minibuild.containers.records import Container, Containers, now
    from minibuild.sandbox.sandbox import check_support

    check_support()
    specs = ([runflags.parse_volume(v, os.getcwd()) for v in volumes]
             + [runflags.parse_mount(m, os.getcwd()) for m in mounts]
             + [runflags.parse_tmpfs(t) for t in tmpfs])
    assignments = [*(line for path in env_files for line in _env_file(path)), *env]
    if hostname is not None:
        runflags.check_hostname(hostname)
    for ports in publish:
        click.echo(f"warning: -p {ports} ignored: {_NO_PORTS[network]}", err=True)
    store = open_store(ctx)
    ref, manifest = store.resolve(image)
    loaded = _image_layers(store, manifest)
    config = loaded.config.config
    argv = runtime.command_line(config, entrypoint, tuple(command))
    specs = runflags.with_image_volumes(specs, config.volumes)
    runflags.check_targets(specs)
    overrides = {k: v for k, v in (("entrypoint", entrypoint), ("cmd", list(command) or None),
                                   ("env", assignments or None), ("workdir", workdir),
                                   ("user", user)) if v is not None}
    records = Containers(store.root)
    records.clean_leftovers()
    template = Container(
        id="", name=name, image=ref, manifest=manifest, diff_ids=loaded.config.diff_ids,
        argv=argv, env=runtime.container_env(config, assignments, os.environ),
        cwd=workdir or config.working_dir or "/", user=user if user is not None else config.user,
        network=network, created=now(), overrides=overrides, auto_remove=auto_remove,
        stop_signal=config.stop_signal, hostname=hostname or "")
    container = _create_with_volumes(records, template, specs)
    root = store.root
    store.close()  # the container's record keeps its layers; prune may run meanwhile
    if detach:
        runtime.run_detached(root, container, tty_=tty_)
        click.echo(container.id)
        return
    ctx.exit(_foreground(root, container, interactive, tty_))


_NO_PORTS = {
    "host": "minibuild containers share the host's network, so a port the command listens on "
            "is already the host's port (no mapping is made)",
    "none": "with --network none the container has only loopback; no port can be reached",
}


def _env_file(path: str) -> list[str]:
    """The assignments of one --env-file."""
    from minibuild.containers.runflags import RunFlagError, parse_env_file

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RunFlagError(f"--env-file {path}: {exc.strerror}") from None
    return parse_env_file(data, path)


def _create_with_volumes(records, template, specs):
    """The container's record, its volumes made first (named ones when missing, anonymous ones
    fresh) under the volumes lock, so no `volume rm` slips in between."""
    from dataclasses import replace

    from minibuild.containers.records import ContainerError
    from minibuild.containers.runflags import named
    from minibuild.containers.volumes import Volumes

    for spec in specs:  # docker checks --mount's bind sources when it creates the container
        if spec.type == "bind" and not spec.create_source and not os.path.exists(spec.source):
            raise ContainerError(f"bind source path does not exist: {spec.source}",
                                 hint="--mount type=bind needs an existing host path "
                                      "(-v makes a missing directory)")
    if not any(spec.type == "volume" for spec in specs):
        return records.create(replace(template, mounts=tuple(specs)))
    volumes = Volumes(records.dir.parent)
    volumes.clean_leftovers()
    fresh: list[str] = []
    with volumes.locked():
        try:
            final = []
            for spec in specs:
                if spec.type == "volume" and spec.anonymous:
                    spec = named(spec, volumes.create(anonymous=True).name)
                    fresh.append(spec.source)
                elif spec.type == "volume":
                    volumes.create(spec.source)
                final.append(spec)
            return records.create(replace(template, mounts=tuple(final)))
        except BaseException:
            for made in fresh:
                volumes.remove(made, ())
            raise


def _foreground(root: Path, container, interactive: bool, tty_: bool) -> int:
    """Run attached to our stdio (or a pty relayed to it); the container's exit status."""
    from minibuild.containers import runtime

    sys.stdout.flush()
    if tty_:
        with runtime.Terminal(0 if interactive else None, 1) as term:
            return runtime.supervise(root, container, term.stdio, tty_=True)
    stdin = 0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return runtime.supervise(root, container, (stdin, 1, 2))
    finally:
        if stdin != 0:
            os.close(stdin)


@cli.command("container-supervise", hidden=True)
@click.argument("container_id")
@click.option("--notify-fd", type=int, required=True)
@click.option("--tty", "tty_", is_flag=True)
@click.pass_context
def container_supervise(ctx, container_id, notify_fd, tty_) -> None:
    """Internal: the detached supervisor of one container (started by run -d and start)."""
    from minibuild.containers import runtime

    ctx.exit(runtime.supervise_detached(_root(ctx), container_id, notify_fd, tty_))


@cli.command("exec", context_settings=_PASS_THROUGH)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass ours through).")
@click.option("-t", "--tty", "tty_", is_flag=True, help="Give the command a terminal (a pty).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Extra variables.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="User: name, uid, name:group or uid:gid.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx, interactive, tty_, env, workdir, user, container, command) -> None:
    """Run a command in a running container (its namespaces, root and environment)."""
    from minibuild.containers import runtime
    from minibuild.oci.image import ContainerConfig
    from minibuild.sandbox.sandbox import Process

    records = _records(ctx)
    found = records.find(container)
    target = runtime.open_target(records, found)
    base = ContainerConfig(env=tuple(f"{k}={v}" for k, v in found.env))
    proc = Process(argv=tuple(command), env=runtime.container_env(base, env, os.environ),
                   cwd=workdir or found.cwd, user=user if user is not None else found.user or None)
    sys.stdout.flush()
    try:
        if tty_:
            with runtime.Terminal(0 if interactive else None, 1) as term:
                status = runtime.exec_in(target, _with_stdio(proc, term.stdio, True))
        else:
            stdin = 0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            status = runtime.exec_in(target, _with_stdio(proc, (stdin, 1, 2), False))
    finally:
        target.close()
    ctx.exit(status)


def _with_stdio(proc, stdio, tty_: bool):
    from dataclasses import replace

    return replace(proc, stdio=stdio, tty=tty_)


# -- ps, stop, start, rm, logs ---------------------------------------------------------------------


def _status_text(records, container) -> str:
    """docker's STATUS column."""
    from minibuild.text import human_age

    state = records.status(container)
    if state == "running":
        return "Up " + human_age(container.started).removesuffix(" ago")
    if state == "exited":
        return f"Exited ({container.exit_code}) {human_age(container.finished)}"
    return state.capitalize()


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only the ids.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def ps(ctx, show_all, quiet, fmt) -> None:
    """List containers (running ones, or all with -a)."""
    from minibuild.text import human_age

    records = _records(ctx)
    shown = [c for c in records.all() if show_all or records.status(c) == "running"]
    if quiet:
        for c in shown:
            click.echo(c.short_id)
    elif fmt == "json":
        click.echo(json.dumps([{**c.to_json(), "status": records.status(c)} for c in shown],
                              indent=2))
    else:
        rows = [(c.short_id, c.image, _quoted(c.argv), human_age(c.created),
                 _status_text(records, c), c.name) for c in shown]
        click.echo(_table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"),
                          rows))


def _quoted(argv) -> str:
    text = " ".join(argv)
    return json.dumps(text if len(text) <= 22 else text[:20] + "…", ensure_ascii=False)


@cli.command()
@click.option("-t", "--time", "timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx, timeout, containers) -> None:
    """Stop running containers: SIGTERM to the command, SIGKILL after a timeout."""
    from minibuild.containers import runtime

    records = _records(ctx)
    for text in containers:
        runtime.stop(records, records.find(text), timeout)
        click.echo(text)


@cli.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx, containers) -> None:
    """Start stopped containers again, in the background (their upper dir is kept)."""
    from minibuild.containers import runtime
    from minibuild.containers.records import ContainerError

    records = _records(ctx)
    store = open_store(ctx)
    for text in containers:
        found = records.find(text)
        if records.status(found) == "running":
            raise ContainerError(f"container {found.name} is already running")
        _image_layers(store, found.manifest)
        runtime.run_detached(store.root, found)
        click.echo(text)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", "volumes", is_flag=True,
              help="Also remove its anonymous volumes (named ones stay).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx, force, volumes, containers) -> None:
    """Remove containers and their upper dirs (their writes are gone; images are untouched)."""
    from minibuild.containers import runtime
    from minibuild.containers.records import ContainerError
    from minibuild.containers.volumes import Volumes

    records = _records(ctx)
    for text in containers:
        found = records.find(text)
        if records.status(found) == "running":
            if not force:
                raise ContainerError(f"cannot remove running container {found.name}",
                                     hint=f"stop it first, or use `minibuild rm -f {text}`")
            runtime.stop(records, found, timeout=0)
        elif records.supervised(found.id):  # starting or finishing: let its supervisor end
            records.wait_unsupervised(found.id, 10.0)
        records.remove(found.id)
        if volumes:
            Volumes(records.dir.parent).drop_anonymous(found, records.all())
        click.echo(text)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the container runs.")
@click.argument("container")
@click.pass_context
def logs(ctx, follow, container) -> None:
    """The output of a detached container."""
    records = _records(ctx)
    found = records.find(container)
    out = sys.stdout.buffer
    try:
        log = open(records.log_path(found.id), "rb")
    except FileNotFoundError:
        return
    with log:
        while True:
            data = log.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if not follow or records.status(records.load(found.id)) != "running":
                out.write(log.read())
                return
            time.sleep(0.1)


# -- diff, commit ----------------------------------------------------------------------------------


@cli.command()
@click.argument("container")
@click.pass_context
def diff(ctx, container) -> None:
    """What a container changed: A added, C changed, D deleted (read from its upper dir)."""
    from minibuild.containers import runtime
    from minibuild.layer.diffview import changes

    root = _root(ctx)
    records = _records(ctx)
    found = records.find(container)
    fs = runtime.rootfs(root, found)
    for change in changes(fs.upper, fs.lowers):
        click.echo(change.line())


@cli.command()
@click.option("-m", "--message", default=None, help="Commit message (history comment).")
@click.option("-a", "--author", default=None, help="Author (history and config).")
@click.option("-p/--no-pause", "--pause", "pause", default=True, show_default=True,
              help="Stop the container's processes while its upper dir is read.")
@click.option("--compression", type=click.Choice(["zstd", "gzip", "none"]), default="zstd",
              show_default=True, help="Layer compression.")
@click.argument("container")
@click.argument("reference", required=False)
@click.pass_context
def commit(ctx, message, author, pause, compression, container, reference) -> None:
    """Make a new image from a container: its upper dir becomes a layer on its image."""
    from minibuild.containers.commit import commit_container
    from minibuild.oci.reference import Reference
    from minibuild.layer.snapshot import Compression

    ref = Reference.parse(reference) if reference else None
    store = open_store(ctx)
    records = _records(ctx)
    found = records.find(container)
    descriptor = commit_container(store, records, found, message=message, author=author,
                                  pause=pause, compression=Compression.parse(compression))
    if ref is not None:
        store.tag(ref, descriptor)
    click.echo(str(descriptor.digest))


# -- rmi, prune, df, layers ------------------------------------------------------------------------


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Untag even when a container uses the image.")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx, force, images) -> None:
    """Remove image tags, then the blobs and layers nothing needs any more."""
    from minibuild.maintenance import gc
    from minibuild.errors import StoreError

    store = open_store(ctx)
    gone = []
    for text in images:
        for name in _untag(store, _records(ctx), text, force):
            click.echo(f"Untagged: {name}")
            gone.append(name)
    try:
        collected = gc.collect(store)
    except StoreError as exc:
        click.echo(f"note: blobs not deleted yet ({exc}); `minibuild prune` frees them later",
                   err=True)
        return
    for digest in collected.blobs:
        click.echo(f"Deleted: {digest}")


def _untag(store, records, text: str, force: bool) -> list[str]:
    """The tags to remove for `rmi TEXT`, after checking no container needs the image."""
    from minibuild.containers.records import ContainerError

    name, descriptor = store.resolve(text)
    same = [n for n, d in store.tags() if d.digest == descriptor.digest]
    names = [name] if name in same else same
    users = records.uses(descriptor.digest)
    if len(names) > 1 and name not in same and not force:
        raise ContainerError(f"image {text} is tagged {len(names)} times: "
                             f"{', '.join(names)}", hint="remove one tag at a time, or use -f")
    if users and not force and len(names) == len(same):
        raise ContainerError(f"unable to remove {text}: container {users[0].short_id} "
                             f"({users[0].name}) is using it",
                             hint="remove the container first, or use `rmi -f` (the container "
                                  "keeps its layers)")
    for n in names:
        store.untag(n)
    return names


@cli.command()
@click.option("--cache", "drop_cache", is_flag=True,
              help="Also drop the build cache (every step key, and the layers only it kept).")
@click.option("--volumes", "drop_volumes", is_flag=True,
              help="Also remove the anonymous volumes no container uses (volumes stay otherwise).")
@click.pass_context
def prune(ctx, drop_cache, drop_volumes) -> None:
    """Delete blobs, unpacked layers and summaries no image, container or cache entry needs."""
    from minibuild.maintenance import gc
    from minibuild.cli.volumes import prune_volumes
    from minibuild.text import human_size

    store = open_store(ctx)
    collected = gc.collect(store, drop_cache=drop_cache)
    removed = prune_volumes(store.root, everything=False) if drop_volumes else []
    click.echo(f"Deleted {len(collected.blobs)} blobs, {len(collected.layer_dirs)} layer dirs, "
               f"{collected.summaries} layer summaries, {collected.cache_entries} cache entries"
               + (f", {len(removed)} volumes" if drop_volumes else ""))
    freed = collected.freed + sum(size for _, size in removed)
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@cli.command()
@click.option("-v", "--verbose", is_flag=True, help="Per image, container and layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def df(ctx, verbose, fmt) -> None:
    """Disk usage: images, containers, volumes, layers, build caches (bytes counted once)."""
    from dataclasses import asdict

    from minibuild.maintenance import usage

    figures = usage.measure(open_store(ctx))
    if fmt == "json":
        click.echo(json.dumps(asdict(figures), indent=2))
        return
    click.echo(_df_summary(figures))
    if verbose:
        click.echo(_df_verbose(figures))


def _df_summary(figures) -> str:
    from minibuild.text import human_size as hs

    rows = []
    for r in figures.rows:
        pct = f" ({100 * r.reclaimable // r.size}%)" if r.size else ""
        rows.append((r.kind, str(r.total), str(r.active), hs(r.size), hs(r.shared), hs(r.unique),
                     hs(r.reclaimable) + pct))
    table = _table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "SHARED", "UNIQUE", "RECLAIMABLE"), rows)
    return table + (f"\nTotal on disk (blobs, layer dirs, containers, volumes, cache mounts): "
                    f"{hs(figures.total)}")


def _df_verbose(figures) -> str:
    from minibuild.text import human_size as hs

    images = [(", ".join(i.names) or "<none>", i.digest[7:19], hs(i.size), hs(i.shared),
               hs(i.unique), str(i.containers)) for i in figures.images]
    containers = [(c.id[:12], c.image, hs(c.size), "running" if c.running else "stopped", c.name)
                  for c in figures.containers]
    layers = [(l.key.removeprefix("sha256:")[:12] if l.key.startswith("sha256:") else l.key,
               hs(l.size), str(l.images), str(l.containers), "yes" if l.cached else "no",
               "yes" if l.referenced else "no") for l in figures.layers]
    volumes = [(v.name, str(v.links), hs(v.size)) for v in figures.volumes]
    mounts = [(m.dir, hs(m.size), "yes" if m.in_use else "no") for m in figures.cache_mounts]
    return "\n".join([
        "\nImages space usage:\n",
        _table(("IMAGE", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"), images),
        "\nContainers space usage:\n",
        _table(("CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"), containers),
        "\nLocal Volumes space usage:\n",
        _table(("VOLUME NAME", "LINKS", "SIZE"), volumes),
        "\nLayers space usage (blob + unpacked dir):\n",
        _table(("LAYER", "SIZE", "IMAGES", "CONTAINERS", "CACHED", "REFERENCED"), layers),
        "\nRUN cache mounts space usage (ROOT/cache/mounts):\n",
        _table(("CACHE DIR", "SIZE", "IN USE"), mounts)])


@cli.command()
@click.option("--files", is_flag=True, help="List each layer's entries, whiteouts included.")
@click.argument("image")
@click.pass_context
def layers(ctx, files, image) -> None:
    """Each layer of an image, base first, with its sizes; wasted bytes per path."""
    from minibuild.text import human_size as hs
    from minibuild.cli.views import history_rows

    store = open_store(ctx)
    loaded = store.load_image(store.resolve(image)[1])
    rows = [r for r in history_rows(store, loaded) if r.layer is not None]
    table = [(str(r.layer), (r.diff_id or "")[7:19], hs(r.size), hs(r.blob_size), hs(r.wasted),
              _short(r.created_by, 50)) for r in rows]
    click.echo(_table(("#", "LAYER", "SIZE", "BLOB", "WASTED", "CREATED BY"), table))
    if files:
        for row, layer in zip(rows, loaded.layers):
            click.echo(f"\nlayer {row.layer} {row.diff_id}:")
            for line in _layer_entries(store.layer_summary(layer), row):
                click.echo("  " + line)
    click.echo(_waste_lines(rows))


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _layer_entries(summary, row) -> list[str]:
    """One line per entry: whiteouts and opaque dirs marked, hidden files flagged."""
    from minibuild.text import human_size as hs

    hidden = {p: by for p, _, _, by in row.hidden}
    lines = [f"{hs(size):>8}  /{path}" + (f"  (hidden by layer {hidden[path]})"
                                           if path in hidden else "")
             for path, size in summary.files]
    lines += [f"{'whiteout':>8}  /{path}" for path in summary.whiteouts]
    lines += [f"{'opaque':>8}  /{path}/" for path in summary.opaques]
    return sorted(lines, key=lambda line: line.split("  /", 1)[1])


def _waste_lines(rows) -> str:
    """The wasted-bytes summary: each hidden path, who added it and who hid it."""
    from minibuild.text import human_size as hs

    hidden = sorted(((size, path, how, r.layer, by) for r in rows
                     for path, size, how, by in r.hidden), key=lambda h: (-h[0], h[1]))
    total = sum(r.size for r in rows)
    if not hidden:
        return f"\n{hs(total)} in {len(rows)} layers; nothing hidden by later layers."
    wasted = sum(h[0] for h in hidden)
    lines = [f"\n{hs(total)} in {len(rows)} layers; {hs(wasted)} ({100 * wasted / total:.1f}%) "
             "is hidden by later layers but still stored:"]
    lines += [f"  {hs(size):>8}  /{path}  added by layer {added}, {how} by layer {by}"
              for size, path, how, added, by in hidden]
    return "\n".join(lines)
