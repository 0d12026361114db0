import torch

from uer.subencoders.chars import Subencoder
from uer.subencoders.configs import AvgConfig
from uer.subencoders.registry import SUBENCODERS


@SUBENCODERS.register("avg", config=AvgConfig)
class AvgSubencoder(Subencoder):
    """The mean of a token's char embeddings (char padding excluded)."""

    def __init__(self, cfg: AvgConfig, *, vocab_tokens: list[str], emb_size: int) -> None:
        super().__init__(vocab_tokens, cfg.max_chars, emb_size)
        self.cfg = cfg

    def encode(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (N, C) -> (N, E)
        weights = mask.unsqueeze(-1).to(self.char_embedding.weight.dtype)  # (N, C, 1)
        return (self.char_embedding(chars) * weights).sum(1) / weights.sum(1)
