"""Corpus -> instances -> on-disk dataset -> batches.

- ``corpus``: streaming reads in byte ranges that workers own; layout checks with clear messages.
- ``sentences``: text clean-up for building corpora (POS tags, sentence and article splitting).
- ``processors``: documents -> instances, one registered class per target set (bert, albert, mlm,
  lm, bilm, cls) that states its facts (layout, targets, masked, label_key).
- ``tsv``: the one classification-TSV reader (run_fastbert.py and the cls processor).
- ``text_pair``: the one ``[CLS] a [SEP] b [SEP]`` encoder and truncation rule; ``words``: word starts.
- ``masking``: token / whole-word / span masking, shared by static (preprocess) and dynamic (collate) masking.
- ``dataset``: the memory-mapped on-disk format (token ids + offsets + per-instance fields, meta.json,
  the vocabulary fingerprint).
- ``preprocessing``: the parallel, constant-memory pipeline behind preprocess.py.
- ``batches``: a dataset as padded batches for the targets; ``loader``: resumable, DDP-sharded epochs.
"""
