"""The OCI image layout on disk: blobs, tags, unpacked layers, sessions, and the gate for outside input."""
