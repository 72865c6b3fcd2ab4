"""The OCI image layout on disk: blobs, tags, unpacked layers, sessions, and the gate for outside input.

paths (every path under the root; standard library only), cas (blobs; no tar), index (tags),
images (config + manifest blobs), layers (unpacked dirs, summaries), session (this process's
scratch), ports (the `BlobStore` seam), layout (the `Store` facade over them), staging (checked
intake from outside), entries (bounded cache dirs), topdir, mounts.
"""
