"""File-system helpers: paths inside a root, users and groups, atomic writes, locks, tree removal."""
