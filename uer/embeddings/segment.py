from dataclasses import dataclass

import torch
from torch import nn

from uer.embeddings.registry import EMBEDDINGS


@dataclass(frozen=True)
class SegmentConfig:
    segment_num: int = 3  # UER ids: 0 = padding, 1 = sentence A, 2 = sentence B


@EMBEDDINGS.register("seg", config=SegmentConfig)
class SegmentEmbedding(nn.Module):
    """Segment ids (0 = padding, 1 = first sentence, 2 = second) -> vectors."""

    def __init__(self, cfg: SegmentConfig, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.segment_num, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.embedding(seg)
