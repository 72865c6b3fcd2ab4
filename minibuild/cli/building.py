"""`build`: its flags (docker's among them), the request it makes, what it prints."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from minibuild.cli import lines
from minibuild.cli.buildflags import docker_flags
from minibuild.cli.usernsflag import userns_mode, userns_option
from minibuild.cli.app import cli, open_store, registries_conf
from minibuild.cli.limits import limit_options, limits_of


@cli.command()
@click.option("-f", "--file", "buildfile", type=click.Path(dir_okay=False),
              help="Buildfile (default: CONTEXT/Buildfile, else Dockerfile, dockerfile or "
                   "Containerfile; - reads stdin).")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and tag (repeatable): app:1.0.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY[=VALUE]",
              help="Set a build-time variable (repeatable); a bare KEY takes its value from "
                   "the environment.")
@click.option("--target", help="Build up to this stage.")
@click.option("--progress", type=click.Choice(["auto", "plain", "tty", "quiet", "rawjson"]),
              default="auto", show_default=True,
              help="Progress output (quiet: as -q; rawjson: not supported yet).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True, help="Layer compression (zstd: smaller, newer clients only).")
@click.option("--network", type=click.Choice(["default", "slirp4netns", "host", "none"]),
              default="default", show_default=True,
              help="Network of RUN steps: default, a private one with outbound access "
                   "(slirp4netns) shared by the build; host, the host's; none, only loopback.")
@click.option("--allow", "allow", multiple=True,
              type=click.Choice(["network.host", "security.insecure"]),
              help="Grant an entitlement (repeatable), as BuildKit's: network.host lets "
                   "RUN --network=host use the host's network, security.insecure lets "
                   "RUN --security=insecure run with every capability.")
@click.option("--no-cache", is_flag=True, help="Run every step; do not reuse cached layers.")
@click.option("--squash", is_flag=True, help="Merge the layers this build adds into one.")
@click.option("--source-date-epoch", type=click.IntRange(min=0), envvar="SOURCE_DATE_EPOCH",
              help="Clamp file times and dates to this Unix time (reproducible builds).")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID[,src=PATH|,env=VAR]",
              help="A secret for RUN --mount=type=secret (repeatable); never stored.")
@click.option("--security-opt", "security_opts", multiple=True,
              metavar="seccomp=unconfined|PROFILE.json|no-new-privileges",
              help="For RUN steps, as docker: another seccomp profile (default: docker's), or "
                   "none; no_new_privs.")
@click.option("--push", is_flag=True, help="Push every -t tag once the build succeeded.")
@userns_option
@docker_flags
@limit_options
@click.argument("context", type=click.Path(exists=True, allow_dash=True), default=".")
@click.pass_context
def build(ctx, buildfile, tags, build_args, target, progress, quiet, compression, network,
          allow, no_cache, squash, source_date_epoch, secrets, security_opts, push, memory,
          pids_limit, cpus, userns, context, **docker) -> None:
    """Build an image from a Buildfile and a context directory (`-`: a Buildfile on stdin).

    Every RUN step runs in a cgroup of its own, limited to 4096 processes unless --pids-limit
    says otherwise."""
    from minibuild.build.pipeline import BuildRequest
    from minibuild.cli import buildflags
    from minibuild.oci.reference import Reference
    from minibuild.layer.compression import Compression
    from minibuild.sandbox.confinement import parse_security_opts
    from minibuild.sandbox.network import parse_mode

    if docker["output"] and docker["output"].startswith("type=image"):  # BuildKit's -t [--push]
        tags, push = _output(docker["output"], tags, push)
        docker = {**docker, "output": None}
    output = _check_docker_flags(docker, progress)
    quiet = quiet or progress == "quiet"
    if context == "-":  # docker: the Buildfile on stdin, no context
        buildfile, context = "-", str(buildflags.stdin_context())
    elif not os.path.isdir(context):
        raise click.BadParameter(f"{context!r} is not a directory", param_hint="CONTEXT")
    request = BuildRequest(
        buildfile=_buildfile_path(buildfile, Path(context)),
        buildfile_text=sys.stdin.read() if buildfile == "-" else None,
        context=Path(context),
        tags=tuple(Reference.parse(t) for t in tags),
        build_args=build_arg_values(build_args, os.environ),
        target=target,
        compression=Compression.parse(compression),
        network=parse_mode(network),
        source_date_epoch=source_date_epoch,
        no_cache=no_cache,
        squash=squash,
        memo=_memo_command(ctx, quiet),
        secrets=_secrets(secrets),
        security=parse_security_opts(security_opts),
        allow=frozenset(allow),
        pull=docker["pull"],
        labels=dict(_label(text) for text in docker["labels"]),
        registries_conf=registries_conf(ctx),
        cache_from=tuple(docker["cache_from"]),
        cache_to=docker["cache_to"][-1] if docker["cache_to"] else None,
        limits=limits_of(memory, pids_limit, cpus),
        userns=userns_mode(userns),
    )
    store = open_store(ctx)
    result = _run_reported(request, store, _reporter(progress, quiet))
    buildflags.write_files(docker["iidfile"], docker["metadata_file"], result, request.tags)
    if output is not None:
        buildflags.write_output(store, output, result.digest,
                                str(request.tags[0]) if request.tags else None)
    if result.cache_note and not quiet:
        click.echo(result.cache_note, err=True)
    if push:
        _push_tags(ctx, store, request.tags, quiet)
    _echo_result(result, request.tags, quiet)


def _run_reported(request, store, reporter):
    """run_build; the reporter's last frame says whether the build failed or was cancelled."""
    from minibuild.build.pipeline import run_build

    failed, canceled = True, False
    try:
        result = run_build(request, store, reporter)
        failed = False
    except KeyboardInterrupt:
        canceled = True
        raise
    finally:
        close = getattr(reporter, "close", None)
        if close:
            close(failed=failed, canceled=canceled)
    return result


def _echo_result(result, tags, quiet: bool) -> None:
    """docker's `build -q`: the image ID on stdout; else the Built/Tagged lines on stderr."""
    if quiet:
        click.echo(str(result.image_id))
        return
    for line in lines.trailer(str(result.image_id), map(str, tags), result.warnings):
        click.echo(line, err=True)


def _output(text: str, tags: tuple[str, ...], push: bool) -> tuple[tuple[str, ...], bool]:
    """`--output type=image,name=A[,name=B],push=true` as tags and the push flag."""
    fields = [part.split("=", 1) for part in text.split(",") if "=" in part]
    if dict(fields).get("type", "image") != "image":
        raise click.BadParameter("only type=image is supported", param_hint="--output")
    names = tuple(n for k, v in fields if k == "name" for n in v.split(",") if n)
    return tags + names, push or dict(fields).get("push", "false").lower() == "true"


def _push_tags(ctx, store, tags, quiet: bool) -> None:
    """`build --push`: each tag to the registry it names, as `push` would."""
    from minibuild.cli.app import registries
    from minibuild.transfer import push as transfer

    if not tags:
        raise click.UsageError("--push needs a -t HOST/REPO:TAG to push to")
    config = registries(ctx)
    for ref in tags:
        result = transfer.push(store, ref.ref_name, registries=config)
        if not quiet:
            click.echo(f"Pushed {ref.ref_name}: {len(result.uploaded)} uploaded, {len(result.skipped)} "
                       f"already there, {len(result.mounted)} mounted ({result.digest})", err=True)


def _memo_command(ctx: click.Context, quiet: bool):
    """The build memo key main() was given for this command line, with the flag its replay
    needs; None when this build may not write a memo."""
    command = ctx.find_root().obj.get("memo")
    return command._replace(quiet=quiet) if command is not None else None


def _buildfile_path(option: str | None, context: Path) -> Path:
    """-f FILE; for `-f -` (stdin) a name that is never read; else the context's default."""
    if option == "-":
        return context / "Buildfile"
    if option:
        return Path(option)
    from minibuild.dockerfile.parser import default_buildfile

    return Path(default_buildfile(context))


def _check_docker_flags(docker: dict, progress: str):
    """Refuse what is not supported yet, before anything is built; the parsed --output."""
    from minibuild.cli import buildflags

    buildflags.check_platform(docker["platform"])
    buildflags.refuse("--add-host", docker["add_hosts"], "RUN steps see the host's /etc/hosts")
    buildflags.refuse("--progress=rawjson", progress == "rawjson", "use plain")
    return buildflags.parse_output(docker["output"])


def build_arg_values(options: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """--build-arg KEY=VALUE options (the last of a key wins). A bare KEY takes KEY's value from
    the environment, as docker does; when the environment has no KEY it is left out, so the
    ARG keeps its default (docker's and buildah's behaviour)."""
    found = {}
    for text in options:
        key, sep, value = text.partition("=")
        if not key:
            raise click.BadParameter(f"{text!r} (want KEY=VALUE)", param_hint="--build-arg")
        if sep:
            found[key] = value
        elif key in environ:
            found[key] = environ[key]
    return found


def _label(text: str) -> tuple[str, str]:
    """`--label KEY=VALUE` (a bare KEY: an empty value, as docker)."""
    key, _, value = text.partition("=")
    if not key:
        raise click.BadParameter(f"{text!r} (want KEY=VALUE)", param_hint="--label")
    return key, value


def _secrets(options: tuple[str, ...]) -> dict:
    """--secret options by id (the last one wins); a file secret's file must exist."""
    from minibuild.dockerfile.secretsource import parse_secret_option

    found = {}
    for text in options:
        try:
            source = parse_secret_option(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--secret") from None
        if source.path is not None and not os.path.isfile(source.path):
            raise click.BadParameter(f"secret {source.id}: no such file: {source.path}",
                                     param_hint="--secret")
        found[source.id] = source
    return found


def _reporter(progress: str, quiet: bool):
    from minibuild.cli import render

    if quiet:
        return render.QuietReporter()
    if progress == "tty" or (progress == "auto" and sys.stderr.isatty()):
        from minibuild.cli.screen import TtyReporter

        return TtyReporter()
    return render.PlainReporter()


