"""Where the store lives by default (kept apart from store.py so the start-up path stays light)."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """`MINIBUILD_ROOT`, else /var/lib/minibuild for root, else ~/.local/share/minibuild."""
    env = os.environ.get("MINIBUILD_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/minibuild")
    return Path.home() / ".local/share/minibuild"
