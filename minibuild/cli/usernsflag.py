"""The --userns flag of `build` and `run` (as root: host, or auto for a range of its own)."""

from __future__ import annotations

import click

userns_option = click.option(
    "--userns", type=click.Choice(["host", "auto"]), default=None,
    help="As root: host runs RUN steps and containers as host root (default, as podman's); "
         "auto gives each build or container 65536 ids of user 'containers' in /etc/subuid, "
         "so its root is not host root. Default: $MINIBUILD_USERNS_MODE, else host.")


def userns_mode(given: str | None) -> str:
    """The mode asked for, else the environment's default (rootless: always its own)."""
    from minibuild.sandbox.idranges import default_mode

    return given or default_mode()
