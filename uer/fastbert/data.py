"""TSV examples -> token ids and segments -> padded batches.

UER's layout: ``[CLS] a [SEP]`` (segment 1) then ``b [SEP]`` (segment 2); 0 marks padding.
Batches are padded to their longest row, not to ``seq_length``: padding costs time and the model
is padding-invariant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from uer.data.loader import pad_batch
from uer.config import MIN_SEQ_LENGTH
from uer.data.text_pair import encode_pair


@dataclass
class Encoded:
    ids: list[list[int]]
    segs: list[list[int]]
    labels: list[int] | list[list[float]] | list[float] | None  # label ids, 0/1 rows (multi_label) or
    # standardised values (regression); None for unlabeled text

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(r) for r in self.ids]


def encode_texts(tokenizer, texts: Sequence[tuple[str, str | None]], seq_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """``[(text_a, text_b or None)]`` -> (ids, segs), by :func:`uer.data.text_pair.encode_pair`
    (BERT's truncation: the longer text loses its last token until the pair fits)."""
    vocab = tokenizer.vocab
    if seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"seq_length {seq_length} is too short for [CLS] text [SEP] (at least {MIN_SEQ_LENGTH})")
    all_ids, all_segs = [], []
    for text_a, text_b in texts:
        b = tokenizer.encode(text_b) if text_b is not None else None
        ids, seg_a, _ = encode_pair(tokenizer.encode(text_a), b, seq_length, vocab.cls_id, vocab.sep_id)
        all_ids.append(ids)
        all_segs.append([1] * seg_a + [2] * (len(ids) - seg_a))
    return all_ids, all_segs


def encode_tsv(tokenizer, data, seq_length: int, labelled: bool = True, scale: tuple[float, float] | None = None) -> Encoded:
    """:class:`uer.data.tsv.TsvData` -> :class:`Encoded`. ``scale``: regression's ``(mean, std)``
    (:func:`target_scale`); the values are stored as ``(value - mean) / std``."""
    ids, segs = encode_texts(tokenizer, [(e.text_a, e.text_b) for e in data.examples], seq_length)
    if not labelled:
        return Encoded(ids, segs, None)
    targets = data.targets()
    if data.task == "regression":
        mean, std = scale if scale is not None else (0.0, 1.0)
        targets = [(v - mean) / std for v in targets]
    return Encoded(ids, segs, targets)


def target_scale(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, std)`` of regression targets (std 1 when they are all equal): a regression model
    learns ``(value - mean) / std``, so the learning rates that suit classification suit it too."""
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / n) ** 0.5
    return float(mean), float(std) if std > 0 else 1.0


def collate(encoded: Encoded, index: Sequence[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Rows ``index`` -> ``{"src", "seg"[, "tgt_cls"]}`` padded to the longest row, on ``device``."""
    index = [int(i) for i in index]
    batch = {
        "src": pad_batch([encoded.ids[i] for i in index], pad_id),
        "seg": pad_batch([encoded.segs[i] for i in index], 0),
    }
    if encoded.labels is not None:  # class ids as longs; 0/1 label rows (multi_label) and values (regression) as floats
        rows = [encoded.labels[i] for i in index]
        batch["tgt_cls"] = torch.tensor(rows, dtype=torch.long if isinstance(rows[0], int) else torch.float32)
    return batch if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in batch.items()}
