"""The early-exit core that sentence exit (``uer.fastbert``) and token exit (``uer.tagging``) share.

Each task package keeps only what is its own (how a branch reads a layer, how a row is scored) and
never imports the other's internals; everything both need lives here once.
"""
