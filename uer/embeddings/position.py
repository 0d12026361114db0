from dataclasses import dataclass

import torch
from torch import nn

from uer.embeddings.registry import EMBEDDINGS


@dataclass(frozen=True)
class PositionConfig:
    max_seq_length: int = 512


@EMBEDDINGS.register("pos", config=PositionConfig)
class PositionEmbedding(nn.Module):
    """Learned absolute positions (BERT, GPT-2)."""

    def __init__(self, cfg: PositionConfig, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.max_seq_length = cfg.max_seq_length
        self.embedding = nn.Embedding(cfg.max_seq_length, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        t = src.shape[1]
        if t > self.max_seq_length:
            raise ValueError(f"sequence of {t} tokens is longer than the position embedding's max_seq_length {self.max_seq_length}")
        return self.embedding.weight[:t].unsqueeze(0)  # (1, T, E), broadcast over the batch
