"""Commands about images: build, history, images, layers, tag, rmi, parse (inspect: inspection.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from minibuild.cli import lines
from minibuild.cli.buildflags import docker_flags
from minibuild.cli.usernsflag import userns_mode, userns_option
from minibuild.cli.app import cli, container_records, open_store, registries_conf, report_error
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
    from minibuild.build.pipeline import BuildRequest, run_build
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
    reporter = _reporter(progress, quiet)
    store = open_store(ctx)
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
    buildflags.write_files(docker["iidfile"], docker["metadata_file"], result, request.tags)
    if output is not None:
        buildflags.write_output(store, output, result.digest,
                                str(request.tags[0]) if request.tags else None)
    if result.cache_note and not quiet:
        click.echo(result.cache_note, err=True)
    if push:
        _push_tags(ctx, store, request.tags, quiet)
    if quiet:
        click.echo(str(result.image_id))  # docker's `build -q`: the image ID
        return
    for line in lines.trailer(str(result.image_id), map(str, request.tags), result.warnings):
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


FORMAT_HELP = ("table (default), json, or a Go template as docker takes: '{{.ID}}', "
               "'table {{.ID}}\\t{{.Size}}', '{{json .}}'.")


@cli.command()
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only the image IDs (docker's: the image's ID on "
              "its newest entry, <missing> on the others).")
@click.option("--format", "fmt", default="table", show_default=True, help=FORMAT_HELP)
@click.argument("image")
@click.pass_context
def history(ctx, no_trunc, quiet, fmt, image) -> None:
    """Show the layers of an image, the instruction that made each, and wasted space."""
    from minibuild.cli import formatting, rows as docker_rows, views

    store = open_store(ctx)
    _, descriptor = store.resolve(image)
    rows = views.history_rows(store, store.load_image(descriptor))
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in reversed(rows)], indent=2))
        return
    if quiet or fmt != "table":
        image_id = str(store.image_id(descriptor))
        entries = [docker_rows.HistoryEntry(r, image_id if i == 0 else None, no_trunc=no_trunc)
                   for i, r in enumerate(reversed(rows))]
        click.echo(formatting.render("{{.ID}}" if quiet else fmt, entries,
                                     docker_rows.HISTORY_HEADERS), nl=False)
        return
    from minibuild.cli import render

    click.echo(render.history_table(rows, no_trunc=no_trunc), nl=False)


_IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
_IMAGES_DIGESTS = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                   "\t{{.Size}}")


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Show all images (default hides intermediate ones: untagged images another "
                   "image is built on).")
@click.option("--digests", is_flag=True, help="Show the DIGEST column (the manifest digest).")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, "
                   "since=IMAGE (repeatable).")
@click.option("--format", "fmt", default="table", show_default=True, help=FORMAT_HELP)
@click.option("--no-trunc", is_flag=True, help="Show whole IDs.")
@click.option("-q", "--quiet", is_flag=True, help="Only the image IDs.")
@click.argument("reference", required=False)
@click.pass_context
def images(ctx, show_all, digests, filters, fmt, no_trunc, quiet, reference) -> None:
    """List images: one line per tag, `<none>` for an untagged one (IMAGE ID: config digest)."""
    from minibuild.cli import filters as image_filters, formatting, rows as docker_rows, views

    store = open_store(ctx)
    wanted = image_filters.parse(filters, image_filters.IMAGE_KEYS)
    if reference:
        wanted.setdefault("reference", []).append(reference)
    chosen = image_filters.image_rows(views.image_entries(store), wanted,
                                      lambda text: views.created_of(store, text),
                                      show_all=show_all)
    if fmt == "json" and not quiet:
        click.echo(json.dumps([views.image_json(entry, name) for entry, name in chosen], indent=2))
        return
    shown = [docker_rows.ImageRow(entry, name, no_trunc=no_trunc) for entry, name in chosen]
    template = "{{.ID}}" if quiet else fmt if fmt != "table" else (
        _IMAGES_DIGESTS if digests else _IMAGES_TABLE)
    click.echo(formatting.render(template, shown, docker_rows.IMAGE_HEADERS), nl=False)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx, source, target) -> None:
    """Give an image another name: tag SOURCE TARGET."""
    from minibuild.oci.reference import Reference

    store = open_store(ctx)
    ref = Reference.parse(target)
    _, descriptor = store.resolve(source)
    store.tag(ref, descriptor)


@cli.command()
@click.option("-f", "--file", "buildfile", type=click.Path(dir_okay=False), default="Buildfile",
              show_default=True)
def parse(buildfile) -> None:
    """Print the parsed instructions of a Buildfile as JSON."""
    from minibuild.cli.dump import dump
    from minibuild.dockerfile import parser

    click.echo(json.dumps(dump(parser.parse_file(buildfile)), indent=2))


@cli.command()
@click.option("-f", "--force", is_flag=True,
              help="Remove an image with several tags, or one a stopped container uses.")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx, force, images) -> None:
    """Remove images (by name, ID or digest): the tags asked for, then what nothing else holds."""
    from minibuild.errors import MinibuildError
    from minibuild.maintenance.removal import remove_image

    store = open_store(ctx)
    records = container_records(ctx)
    failed, layers = False, set()
    for text in images:  # as docker: one failure does not stop the others
        try:
            removal = remove_image(store, records, text, force=force)
        except MinibuildError as exc:
            report_error(exc)
            failed = True
            continue
        for name in removal.untagged:
            click.echo(f"Untagged: {name}")
        if removal.deleted:
            click.echo(f"Deleted: {removal.deleted}")
            layers |= _layer_blobs(store, removal.manifest)
    _collect_after_rmi(store, layers)
    if failed:
        ctx.exit(1)


def _layer_blobs(store, manifest) -> set[str]:
    """The layer blobs of a removed image (still stored until gc runs)."""
    try:
        return {str(layer.descriptor.digest) for layer in store.load_image(manifest).layers}
    except Exception:  # noqa: BLE001 - only for the report: gc judges what goes
        return set()


def _collect_after_rmi(store, layers: set[str]) -> None:
    """Delete the blobs nothing needs any more; name the removed images' layers among them."""
    from minibuild.errors import StoreError
    from minibuild.maintenance import gc

    try:
        collected = gc.collect(store)
    except StoreError as exc:
        click.echo(f"note: blobs not deleted yet ({exc}); `minibuild prune` frees them later",
                   err=True)
        return
    for digest in collected.blobs:
        if digest in layers:
            click.echo(f"Deleted: {digest}")


@cli.command()
@click.option("--files", is_flag=True, help="List each layer's entries, whiteouts included.")
@click.argument("image")
@click.pass_context
def layers(ctx, files, image) -> None:
    """Each layer of an image, base first, with its sizes; wasted bytes per path."""
    from minibuild.cli import render
    from minibuild.cli.views import history_rows

    store = open_store(ctx)
    loaded = store.load_image(store.resolve(image)[1])
    rows = [r for r in history_rows(store, loaded) if r.layer is not None]
    click.echo(render.layers_table(rows))
    if files:
        for row, layer in zip(rows, loaded.layers):
            click.echo(f"\nlayer {row.layer} {row.diff_id}:")
            for line in render.layer_entries(store.layer_summary(layer), row):
                click.echo("  " + line)
    click.echo(render.layers_waste(rows))
