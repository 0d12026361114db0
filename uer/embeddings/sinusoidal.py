import math

import torch

from uer.embeddings.base import EmbeddingComponent, first_positions
from uer.embeddings.configs import SinusoidalConfig
from uer.embeddings.registry import EMBEDDINGS


@EMBEDDINGS.register("sinusoidal", config=SinusoidalConfig)
class SinusoidalPositionEmbedding(EmbeddingComponent):
    """Fixed sin/cos positions (Vaswani et al. 2017); no parameters."""

    def __init__(self, cfg: SinusoidalConfig, *, vocab_size: int, emb_size: int) -> None:
        super().__init__()
        self.max_seq_length = cfg.max_seq_length
        position = torch.arange(cfg.max_seq_length, dtype=torch.float32)[:, None]  # (L, 1)
        freq = torch.exp(torch.arange(0, emb_size, 2, dtype=torch.float32) * (-math.log(10000.0) / emb_size))
        table = torch.zeros(cfg.max_seq_length, emb_size)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: emb_size // 2])  # odd emb_size: one fewer cos column
        self.register_buffer("table", table, persistent=False)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return first_positions(self.table, src.shape[1])  # (1, T, E)
