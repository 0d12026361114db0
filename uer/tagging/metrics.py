"""Entity-level scores: BIO tags -> spans, exact-match precision / recall / F1 (the CoNLL rule).

A span starts at ``B-X``, or at ``I-X`` that does not continue an entity of type X (an ``I-``
without its ``B-`` starts an entity, as ``conlleval`` reads it); it continues over ``I-X`` of
the same type and ends at anything else. A predicted entity counts only when its type, start and
end all equal a gold entity's.
"""
from __future__ import annotations

from typing import Sequence


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``["B-PER", "I-PER", "O", "I-LOC"]`` -> ``[("PER", 0, 2), ("LOC", 3, 4)]`` (end exclusive)."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate(tags):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label
        if kind is not None and not continues:
            spans.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float | int]:
    """Micro-averaged over all entities of all sentences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences, {len(pred)} predicted")
    correct = gold_n = pred_n = 0
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"a sentence has {len(g)} gold tags and {len(p)} predicted")
        gs, ps = set(bio_spans(g)), set(bio_spans(p))
        correct += len(gs & ps)
        gold_n += len(gs)
        pred_n += len(ps)
    precision = correct / pred_n if pred_n else 0.0
    recall = correct / gold_n if gold_n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "correct": correct, "gold": gold_n, "predicted": pred_n}
