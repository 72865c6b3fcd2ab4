"""The command line: the only place that prints, parses flags and picks an exit code.

`app` holds the click group, the store openers and the entry point; one module per command
area registers its commands on it: images (build, history, images, layers, inspect, tag, rmi,
parse), run (run, exec), containers (ps, stop, start, rm, logs, diff, commit), volumes,
transfer (save, load, import, pull, push, login, logout), maintenance (fsck, prune, df).
`views` reads the store for history and images, `render` and `lines` make the text. This
package's own import is empty, so the build memo's replay can use `lines` without loading click.
"""
