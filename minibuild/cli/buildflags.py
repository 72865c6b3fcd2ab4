"""docker's `build` flags beyond the Buildfile: what they mean before the build (checks, the
Buildfile to read) and after it (--iidfile, --metadata-file, --output)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import click

from minibuild.errors import MinibuildError

BUILDFILE_NAMES = ("Buildfile", "Dockerfile", "Containerfile")
OUTPUT_TYPES = ("oci", "docker", "local", "tar")


def host_platform() -> str:
    """The host's platform as docker names it (linux/amd64, linux/arm64)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7"}.get(machine, machine)
    return f"linux/{arch}"


def check_platform(text: str | None) -> None:
    """--platform: the host's is accepted, others are not supported yet."""
    for wanted in (text or "").split(","):
        if wanted and wanted.strip() not in (host_platform(), host_platform().split("/")[1]):
            raise MinibuildError(f"--platform {wanted.strip()}: not supported yet (minibuild "
                                 f"builds for the host platform, {host_platform()})")


def refuse(name: str, value, why: str) -> None:
    """A docker flag minibuild does not implement yet: a clear error instead of ignoring it."""
    if value:
        raise MinibuildError(f"{name} is not supported yet: {why}")


def parse_output(text: str | None) -> tuple[str, str] | None:
    """`--output type=T,dest=D` (or `-o DIR`, docker's type=local) as (type, dest)."""
    if not text:
        return None
    if "=" not in text.split(",")[0]:
        fields = {"type": "local", "dest": text}
    else:
        fields = dict(part.partition("=")[::2] for part in text.split(","))
    kind, dest = fields.get("type", "local"), fields.get("dest", "")
    if kind not in OUTPUT_TYPES:
        raise click.BadParameter(f"unknown output type {kind!r}", param_hint="--output")
    if not dest:
        raise click.BadParameter(f"type={kind} needs dest=FILE", param_hint="--output")
    return kind, dest


def write_output(store, output: tuple[str, str], digest, tag: str | None) -> None:
    """Write the built image as `save` would (an OCI layout or a docker archive)."""
    from minibuild.transfer import docker_archive, oci_archive

    kind, dest = output
    if kind in ("local", "tar"):
        write_rootfs(store, store.find(str(digest)).descriptor, kind, dest)
        return
    writer = docker_archive.save if kind == "docker" else oci_archive.save
    chosen = [(tag, store.find(str(digest)).descriptor)]
    if dest == "-":
        writer(store, chosen, click.get_binary_stream("stdout"))
        return
    tmp = Path(dest).with_name(f".{Path(dest).name}.partial")
    try:
        with open(tmp, "wb") as out:
            writer(store, chosen, out)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_rootfs(store, descriptor, kind: str, dest: str) -> None:
    """The image's files (its layers merged by an overlay mounted in a child) into a new or
    empty host dir (local) or a tar file (tar; `-`: stdout)."""
    from minibuild.containers.treecopy import copy_tree
    from minibuild.sandbox.overlay import make_overlay_dirs
    from minibuild.sandbox.sandbox import RootFS, Sandbox

    dest = dest if dest == "-" else os.path.abspath(dest)
    image = store.load_image(descriptor)
    for layer in image.layers:
        store.ensure_layer(layer)
    lowers = tuple(store.layer_path(layer.diff_id) for layer in reversed(image.layers))
    if kind == "local":
        os.makedirs(dest, exist_ok=True)
        if os.listdir(dest):
            raise MinibuildError(f"--output dest={dest}: the directory is not empty")
    upper, work, merged = make_overlay_dirs(store.scratch("output-"))

    def copy() -> None:
        source = os.open(merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if kind == "local":
                target = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    copy_tree(source, target)
                finally:
                    os.close(target)
            else:
                _tar_tree(source, dest)
        finally:
            os.close(source)

    Sandbox().call(RootFS(lowers, upper, work, merged), lambda: None, pre_chroot=copy)


def _tar_tree(source: int, dest: str) -> None:
    """A tar of dir fd `source`'s contents (entries lstat'ed, links kept) to dest or stdout."""
    import tarfile

    out = click.get_binary_stream("stdout") if dest == "-" else open(dest, "wb")
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(source)):
                tar.add(f"/proc/self/fd/{source}/{name}", arcname=name)
    finally:
        out.flush()
        if dest != "-":
            out.close()


def write_files(iidfile: str | None, metadata_file: str | None, result, tags) -> None:
    """--iidfile (the image ID) and --metadata-file (BuildKit's keys) after a build."""
    if iidfile:
        Path(iidfile).write_text(str(result.image_id))
    if metadata_file:
        meta = {"containerimage.config.digest": str(result.image_id),
                "containerimage.digest": str(result.digest)}
        if tags:
            meta["image.name"] = ",".join(str(t) for t in tags)
        Path(metadata_file).write_text(json.dumps(meta, indent=2) + "\n")


def docker_flags(command):
    """docker's build flags for files, registries and platforms (checked by
    _check_docker_flags; --iidfile, --metadata-file and --output written after the build)."""
    flags = [
        click.option("--iidfile", type=click.Path(dir_okay=False), help="Write the image ID here."),
        click.option("--metadata-file", type=click.Path(dir_okay=False),
                     help="Write the image ID and digest here as JSON (BuildKit's keys)."),
        click.option("-o", "--output", metavar="type=local|tar|oci|docker,dest=D",
                     help="Also write the image's files (local: a new or empty dir; tar: a "
                          "file) or the image (oci, docker archives); `-o DIR`: type=local."),
        click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
                     is_flag=False, flag_value="always", show_default=True,
                     help="FROM host/repo: pull when missing, always (bare --pull), or never."),
        click.option("--platform", help="Only the host's platform is supported."),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
                     help="Set a label on the image (repeatable)."),
        click.option("--add-host", "add_hosts", multiple=True, metavar="HOST:IP",
                     help="Not supported yet: RUN steps see the host's /etc/hosts."),
        click.option("--cache-from", "cache_from", multiple=True, metavar="type=registry,ref=HOST/REPO",
                     help="Reuse steps a registry cache holds (repeatable, tried in order)."),
        click.option("--cache-to", "cache_to", multiple=True,
                     metavar="type=registry,ref=HOST/REPO[,mode=min|max]",
                     help="Export the build's steps to a registry cache (max: every stage's)."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def stdin_context() -> Path:
    """`build -`: an empty context dir (the Buildfile comes on stdin), removed at exit."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="minibuild-stdin-context-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.chmod(path, 0o755)
    return path
