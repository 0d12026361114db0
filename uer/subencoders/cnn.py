import torch
import torch.nn.functional as F
from torch import nn

from uer.layers import activation
from uer.layers.pooling import pool
from uer.subencoders.chars import Subencoder
from uer.subencoders.configs import CnnSubencoderConfig
from uer.subencoders.registry import SUBENCODERS


@SUBENCODERS.register("cnn", config=CnnSubencoderConfig)
class CnnSubencoder(Subencoder):
    """Character CNN (Kim et al. 2016): chars -> convolution -> act -> max over the real chars."""

    def __init__(self, cfg: CnnSubencoderConfig, *, vocab_tokens: list[str], emb_size: int) -> None:
        super().__init__(vocab_tokens, cfg.max_chars, cfg.char_emb_size)
        self.cfg = cfg
        self.conv = nn.Conv1d(cfg.char_emb_size, emb_size, cfg.kernel_size)
        self.pad = ((cfg.kernel_size - 1) // 2, cfg.kernel_size // 2)  # same length; even kernels lean right
        self.act = activation(cfg.act)

    def encode(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (N, C) -> (N, E)
        # Zeroed char padding looks like the convolution's own zero padding past the last char,
        # so a token's output does not depend on max_chars.
        x = self.char_embedding(chars).masked_fill(~mask.unsqueeze(-1), 0.0).transpose(1, 2)  # (N, D, C)
        out = self.act(self.conv(F.pad(x, self.pad))).transpose(1, 2)  # (N, C, E)
        return pool(out, mask, "max")
