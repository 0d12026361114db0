from dataclasses import dataclass

import torch
from torch import nn

from uer.embeddings.registry import EMBEDDINGS


@dataclass(frozen=True)
class WordConfig:
    pass


@EMBEDDINGS.register("word", config=WordConfig)
class WordEmbedding(nn.Module):
    """Token ids -> vectors (the decoder of mlm / lm may share this matrix)."""

    def __init__(self, cfg: WordConfig, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        return self.embedding(src)
