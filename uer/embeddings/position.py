import torch
from torch import nn

from uer.embeddings.base import EmbeddingComponent, first_positions
from uer.embeddings.configs import PositionConfig
from uer.embeddings.registry import EMBEDDINGS


@EMBEDDINGS.register("pos", config=PositionConfig)
class PositionEmbedding(EmbeddingComponent):
    """Learned absolute positions (BERT, GPT-2)."""

    def __init__(self, cfg: PositionConfig, *, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.max_seq_length = cfg.max_seq_length
        self.embedding = nn.Embedding(cfg.max_seq_length, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return first_positions(self.embedding.weight, src.shape[1])  # (1, T, E)
