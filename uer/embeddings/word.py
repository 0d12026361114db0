import torch
from torch import nn

from uer.embeddings.base import EmbeddingComponent
from uer.embeddings.configs import WordConfig
from uer.embeddings.registry import EMBEDDINGS


@EMBEDDINGS.register("word", config=WordConfig)
class WordEmbedding(EmbeddingComponent):
    """Token ids -> vectors (the decoder of mlm / lm may share this matrix)."""

    def __init__(self, cfg: WordConfig, *, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        return self.embedding(src)
