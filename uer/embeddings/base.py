import torch
from torch import nn


class EmbeddingComponent(nn.Module):
    """One summand of the embedding: ``forward(src, seg)`` (B, T) ids -> (B or 1, T, emb_size).

    Constructed as ``cls(cfg, vocab_size=..., emb_size=...)``. ``max_seq_length`` is the longest
    sequence it can embed (None: any length); the composite reports the smallest."""

    max_seq_length: int | None = None

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def first_positions(table: torch.Tensor, t: int) -> torch.Tensor:
    """Rows 0..t-1 of a (L, E) position table as (1, T, E), broadcast over the batch."""
    if t > table.shape[0]:
        raise ValueError(f"sequence of {t} tokens is longer than the position embedding's max_seq_length {table.shape[0]}")
    return table[:t].unsqueeze(0)
