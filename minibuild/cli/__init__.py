"""The command line: the only place that prints, parses flags and picks an exit code.

`app` holds the click group and the entry point; one module per command area registers its
commands on it. This package's own import is empty, so the build memo's replay can use `lines`
without loading click.
"""
