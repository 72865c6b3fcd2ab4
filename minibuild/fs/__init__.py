"""File-system helpers: paths inside a root (rootpath), users and groups (users), atomic writes
and tree removal (files), file locks (lock)."""
