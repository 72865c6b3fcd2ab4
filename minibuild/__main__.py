"""The `minibuild` entry point (also `python -m minibuild`).

A `build` whose inputs did not change since the same command last ran is answered from its memo
(memo.py) before the command line machinery is imported; everything else goes to the CLI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Answer from the build memo when it holds, else run the command line."""
    from minibuild import __version__
    from minibuild.build import memo

    try:
        command = memo.command(sys.argv[1:], os.getcwd(), os.environ, __version__)
    except OSError:  # e.g. the working directory is gone: let the CLI report it
        command = None
    replay = memo.lookup(command) if command is not None else None
    if replay is not None:
        try:
            _show(replay)
        except BrokenPipeError:
            sys.exit(1)
        return
    _enter_user_namespace(command)
    from minibuild.cli.app import main as cli_main

    cli_main(memo_command=command)  # the build that runs may write this command's memo


def _enter_user_namespace(command) -> None:
    """Rootless: become uid 0 of this user's namespace before anything else (one thread yet)."""
    if os.geteuid() == 0:
        return
    from minibuild.errors import MinibuildError
    from minibuild.sandbox import userns

    if not userns.wanted(sys.argv[1:]):
        return
    from minibuild.store.paths import default_root

    root = command.root if command is not None else userns.root_option(sys.argv[1:])
    try:
        userns.enter(Path(root or default_root()))
    except MinibuildError as exc:  # before click: said as the CLI says it
        sys.stderr.write(f"error: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        sys.exit(exc.exit_code)


def _show(replay) -> None:
    """What `build` prints for a fully cached build: the progress as the build would draw it
    (TTY frame or plain lines, without importing rich), then the result."""
    if replay.quiet:
        if sys.stdout is not None:  # stdout may be closed (`>&-`)
            sys.stdout.write(f"{replay.image_id}\n")
        return
    if sys.stderr is None:
        return
    from minibuild.cli import lines as fmt

    if _tty_progress(sys.argv[1:]):
        lines = fmt.cached_frame(replay.steps, _width(), _color())
    else:
        lines = []
        for step in replay.steps:
            lines.append(fmt.step_header(step.stage, step.number, step.total, step.text))
            lines.append(fmt.step_done(0, "CACHED" if step.cached else ""))
    lines += fmt.trailer(replay.image_id, replay.tags, replay.warnings)
    sys.stderr.write("\n".join(lines) + "\n")


def _tty_progress(argv: list[str]) -> bool:
    """Whether the build would draw TTY progress: `--progress tty`, or `auto` (the default)
    with stderr on a terminal."""
    mode = "auto"
    for index, arg in enumerate(argv):
        if arg.startswith("--progress="):
            mode = arg.removeprefix("--progress=")
        elif arg == "--progress" and index + 1 < len(argv):
            mode = argv[index + 1]
    return mode == "tty" or (mode == "auto" and sys.stderr.isatty())


def _width() -> int:
    """The terminal's columns (80 when it cannot tell), as rich reads them."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _color() -> bool:
    """Colours on a terminal, unless NO_COLOR (no-color.org) or a dumb terminal says otherwise."""
    return (sys.stderr.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")


if __name__ == "__main__":
    main()
