"""Namespaces, overlay mounts and processes: where RUN steps and containers execute.

sandbox (RootFS, run, call) over helpertree (the parent's side of the forked helpers) and
children (the helpers themselves), overlay, scaffold (/proc, /dev, /etc files), stepmounts,
pivot (pivot_root into the root), limits, hierarchy and cgroups (docker's limit flags, the
mounted cgroup hierarchies, one cgroup per step or container), freezer (pause), confinement +
seccomp + landlock (what the command may do), process, channel, linux (ctypes), userns
(rootless).
"""
