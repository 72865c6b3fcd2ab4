"""Containers: records, run/exec/commit, volumes and run flags.

records (ROOT/containers/<id>, liveness by lock), runflags (run's -v/--mount/--tmpfs/--env-file/-h
parsed) into mountspec (MountSpec and the rules every mount obeys), runtime (what a container
runs; its supervisor, foreground or detached), containermounts (specs as sandbox mounts, volume
seeding) with treecopy, terminal (the pty relay), exectarget (exec into a running container),
signals (stop, STOPSIGNAL, pause), commit (upper dir to a layer), volumes.
"""
