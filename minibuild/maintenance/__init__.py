"""Housekeeping over the store: prune (gc), fsck, df."""
