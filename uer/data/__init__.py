"""Corpus -> instances -> on-disk dataset -> batches.

- ``corpus``: streaming reads in byte ranges that workers own; layout checks with clear messages.
- ``sentences``: text clean-up for building corpora (POS tags, sentence and article splitting).
- ``processors``: documents -> instances for each target set (bert, albert, mlm, lm, bilm, cls).
- ``masking``: token / whole-word / span masking, shared by static (preprocess) and dynamic (collate) masking.
- ``dataset``: the memory-mapped on-disk format (token ids + offsets + per-instance fields, meta.json).
- ``preprocessing``: the parallel, constant-memory pipeline behind preprocess.py.
- ``batches``: a dataset as padded batches for the targets; ``loader``: resumable, DDP-sharded epochs.
"""
