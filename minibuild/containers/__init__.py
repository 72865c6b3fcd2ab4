"""Containers: records, run/exec/commit, volumes and run flags."""
