"""`run` and `exec`: a command in a new container, or in a running one (docker's flags), and
the hidden supervisor command `run -d` and `start` leave running."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from minibuild.cli.app import cli, container_records, open_store, store_root
from minibuild.cli.containers import image_layers
from minibuild.cli.limits import limit_options, limits_of
from minibuild.cli.usernsflag import userns_mode, userns_option

_PASS_THROUGH = {"allow_interspersed_args": False}  # `run IMAGE sh -c ...`: -c is the command's

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
@click.option("--network", type=click.Choice(["default", "bridge", "slirp4netns", "host", "none"]),
              default="default", show_default=True,
              help="default (or bridge): a private network with outbound access (slirp4netns); "
                   "host: the host's network; none: only loopback.")
@click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:CONTAINER[/PROTO]",
              help="Publish a container port on the host (127.0.0.1 unless IP is given); "
                   "default network only.")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:OPTS]",
              help="Bind a host path (absolute, or ./relative) or mount a named volume on DST; "
                   "`-v DST` makes an anonymous volume. OPTS: ro, rw, nocopy (z, Z ignored).")
@click.option("--mount", "mounts", multiple=True,
              metavar="type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]",
              help="docker's long form of -v and --tmpfs.")
@click.option("--tmpfs", "tmpfs", multiple=True, metavar="DST[:size=N,mode=OCTAL,exec]",
              help="A fresh tmpfs on DST (noexec unless `exec`).")
@click.option("--entrypoint", default=None, help="Replace the image's ENTRYPOINT (and its CMD).")
@click.option("--security-opt", "security_opts", multiple=True,
              metavar="seccomp=unconfined|PROFILE.json|no-new-privileges",
              help="As docker: another seccomp profile (default: docker's), or none; "
                   "no_new_privs for the command (exec uses the container's).")
@limit_options
@userns_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, auto_remove, detach, interactive, tty_, name, env, env_files, workdir, user,
        hostname, network, publish, volumes, mounts, tmpfs, entrypoint, security_opts, memory,
        pids_limit, cpus, userns, image, command) -> None:
    """Run a command in a new container: the image's shared layers under its own upper dir."""
    from minibuild.containers import mountspec, runflags, runtime
    from minibuild.containers.records import Container, Containers, now
    from minibuild.containers.publish import parse_publish
    from minibuild.sandbox.confinement import parse_security_opts, prepare
    from minibuild.sandbox.network import parse_mode
    from minibuild.sandbox.sandbox import check_support

    check_support()
    security = parse_security_opts(security_opts)
    prepare(security)  # a profile that does not compile fails here, before any container
    limits = limits_of(memory, pids_limit, cpus)
    specs = ([runflags.parse_volume(v, os.getcwd()) for v in volumes]
             + [runflags.parse_mount(m, os.getcwd()) for m in mounts]
             + [runflags.parse_tmpfs(t) for t in tmpfs])
    assignments = [*(line for path in env_files for line in _env_file(path)), *env]
    if hostname is not None:
        runflags.check_hostname(hostname)
    network = parse_mode(network)
    ports = tuple(parse_publish(p) for p in publish) if network == "default" else ()
    if network != "default":
        for text in publish:
            click.echo(f"warning: -p {text} ignored: {_NO_PORTS[network]}", err=True)
    store = open_store(ctx)
    ref, manifest = store.resolve(image)
    loaded = image_layers(store, manifest)
    config = loaded.config.config
    argv = runtime.command_line(config, entrypoint, tuple(command))
    specs = mountspec.with_image_volumes(specs, config.volumes)
    mountspec.check_targets(specs)
    overrides = {k: v for k, v in (("entrypoint", entrypoint), ("cmd", list(command) or None),
                                   ("env", assignments or None), ("workdir", workdir),
                                   ("user", user)) if v is not None}
    records = Containers(store.root)
    records.clean_leftovers()
    environment = runtime.container_env(config, assignments, os.environ)
    if tty_:
        environment = runtime.terminal_env(environment, os.environ)
    template = Container(
        id="", name=name, image=ref, manifest=manifest, diff_ids=loaded.config.diff_ids,
        argv=argv, env=environment,
        cwd=workdir or config.working_dir or "/", user=user if user is not None else config.user,
        network=network, created=now(), overrides=overrides, auto_remove=auto_remove,
        stop_signal=config.stop_signal, hostname=hostname or "", security=security,
        ports=ports, limits=limits, userns=userns_mode(userns))
    container = _create_with_volumes(records, template, specs)
    root = store.root
    store.close()  # the container's record keeps its layers; prune may run meanwhile
    if detach:
        runtime.run_detached(root, container, tty_=tty_)
        click.echo(container.id)
        return
    ctx.exit(_foreground(root, container, interactive, tty_))


_NO_PORTS = {
    "host": "with --network host a port the command listens on is already the host's port "
            "(no mapping is made)",
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
    from minibuild.containers.mountspec import named
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
    """Run attached to our stdio (or a pty relayed to it), its output kept in its log too;
    the container's exit status."""
    from minibuild.containers import runtime

    sys.stdout.flush()
    if tty_:
        return runtime.run_terminal(root, container, 0 if interactive else None, 1)
    stdin = 0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return runtime.run_logged(root, container, stdin, tee=True)
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

    ctx.exit(runtime.supervise_detached(store_root(ctx), container_id, notify_fd, tty_))


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
    from dataclasses import replace

    from minibuild.containers import exectarget, runtime
    from minibuild.containers.terminal import Terminal
    from minibuild.oci.image import ContainerConfig
    from minibuild.sandbox.confinement import prepare
    from minibuild.sandbox.sandbox import Process

    records = container_records(ctx)
    found = records.find(container)
    base = ContainerConfig(env=tuple(f"{k}={v}" for k, v in found.env))
    proc = Process(argv=tuple(command), env=runtime.container_env(base, env, os.environ),
                   cwd=workdir or found.cwd, user=user if user is not None else found.user or None)
    target = exectarget.open_target(records, found)
    try:
        # docker exec has no --security-opt either; the container's PID 1 is its own command
        # (no interpreter of ours), so only ours is refused
        confinement = prepare(found.security)
        sys.stdout.flush()
        if tty_:
            with Terminal(0 if interactive else None, 1, console=True) as term:
                status = exectarget.exec_in(target, replace(proc, tty=True,
                                                            console=term.console_fd),
                                            confinement)
        else:
            stdin = 0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            status = exectarget.exec_in(target, _with_stdio(proc, (stdin, 1, 2), False),
                                        confinement)
    finally:
        target.close()
    ctx.exit(status)


def _with_stdio(proc, stdio, tty_: bool):
    from dataclasses import replace

    return replace(proc, stdio=stdio, tty=tty_)
