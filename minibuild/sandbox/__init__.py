"""Namespaces, overlay mounts and processes: where RUN steps and containers execute."""
