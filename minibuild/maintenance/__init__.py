"""Housekeeping over the store: prune (gc), fsck, df.

reachability (what the roots need) under gc (rmi/prune) and fsck; fsck's findings and its deep
pass (layerdirs: layer dirs against their blobs); df as inventory (the store on disk) → usage
(the figures, pure), both measuring trees with treesize.
"""
