import torch
from torch import nn

from uer.embeddings.base import EmbeddingComponent
from uer.embeddings.configs import SegmentConfig
from uer.embeddings.registry import EMBEDDINGS


@EMBEDDINGS.register("seg", config=SegmentConfig)
class SegmentEmbedding(EmbeddingComponent):
    """Segment ids (0 = padding, 1 = first sentence, 2 = second) -> vectors."""

    def __init__(self, cfg: SegmentConfig, *, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.segment_num, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.embedding(seg)
