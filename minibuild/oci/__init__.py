"""Spec values of the OCI image format: digests, references, descriptors, manifests, configs. Pure."""
