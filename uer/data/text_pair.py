"""``[CLS] a [SEP] (b [SEP])``: the one layout and truncation rule for classification inputs.

    ids, seg_a, cut = encode_pair(a_ids, b_ids, seq_length=128, cls_id=vocab.cls_id, sep_id=vocab.sep_id)

Used by preprocess.py's ``cls`` processor and by FastBERT's ``encode_texts``, so a text pair
becomes the same ids in a dataset and at fine-tuning / prediction time. Truncation is BERT's rule
for classification inputs (``_truncate_seq_pair`` in Google's run_classifier.py): while the pair
is too long, drop the last token of the longer text (text_b on a tie); a single text keeps its
first tokens.
"""
from __future__ import annotations

from typing import Sequence


def fit_pair(len_a: int, len_b: int, room: int) -> tuple[int, int]:
    """How many tokens of a and b BERT's rule keeps in ``room`` tokens (closed form of the one-token loop)."""
    if len_a + len_b <= room:
        return len_a, len_b
    half_a, half_b = room - room // 2, room // 2  # the loop cuts b on ties, so a keeps the odd token
    if len_a <= half_a:
        return len_a, room - len_a
    if len_b <= half_b:
        return room - len_b, len_b
    return half_a, half_b


def encode_pair(a: Sequence[int], b: Sequence[int] | None, seq_length: int, cls_id: int, sep_id: int) -> tuple[list[int], int, int]:
    """Token ids of text a (and b) -> (ids, length of segment 1 = ``[CLS] a [SEP]``, tokens cut)."""
    if seq_length < (3 if b is not None else 2):
        raise ValueError(f"seq_length {seq_length} is too short for [CLS] text [SEP]" + (" text [SEP]" if b is not None else ""))
    if b is None:
        keep_a, keep_b = min(len(a), seq_length - 2), 0
        cut = len(a) - keep_a
    else:
        keep_a, keep_b = fit_pair(len(a), len(b), seq_length - 3)
        cut = len(a) + len(b) - keep_a - keep_b
    ids = [cls_id, *a[:keep_a], sep_id]
    seg_a = len(ids)
    if b is not None:
        ids += [*b[:keep_b], sep_id]
    return ids, seg_a, cut
