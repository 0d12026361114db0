"""Convolutional encoders: ``cnn`` (same-length residual convolutions) and ``gatedcnn``.

Both zero the padding positions before every convolution: a zeroed padding position looks
exactly like the convolution's own zero padding past the end of a sequence, so a sample gives
the same output alone and inside a padded batch.
"""

import torch
import torch.nn.functional as F
from torch import nn

from uer.encoders.base import Encoder, EncoderContext
from uer.encoders.configs import CnnConfig, GatedCnnConfig
from uer.encoders.registry import ENCODERS
from uer.layers import activation
from uer.layers.dropout import Dropout


def masked_conv(conv: nn.Conv1d, hidden: torch.Tensor, real: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """(B, T, C_in), (B, T) real-token mask -> (B, T, C_out): zero padding tokens, pad the time axis by (left, right), convolve."""
    x = hidden.masked_fill(~real.unsqueeze(-1), 0.0).transpose(1, 2)  # (B, C_in, T)
    return conv(F.pad(x, (left, right))).transpose(1, 2)


@ENCODERS.register("cnn", config=CnnConfig)
class CnnEncoder(Encoder):
    """Stacked same-length 1-D convolutions, each layer ``norm(x + dropout(act(conv(x))))``.

    The kernel is centred, so a position sees both sides (not causal: use gatedcnn for an LM).
    """

    causal = False

    def __init__(self, cfg: CnnConfig) -> None:
        super().__init__()
        if cfg.kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {cfg.kernel_size}")
        self.cfg = cfg
        self.layers_num = cfg.layers_num
        self.output_size = cfg.hidden_size
        # An even kernel has one more position on the right than on the left.
        self.pad = ((cfg.kernel_size - 1) // 2, cfg.kernel_size // 2)
        self.conv = nn.ModuleList(nn.Conv1d(cfg.hidden_size, cfg.hidden_size, cfg.kernel_size) for _ in range(cfg.layers_num))
        self.layer_norm = nn.ModuleList(nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps) for _ in range(cfg.layers_num))
        self.act = activation(cfg.act)
        self.dropout = Dropout(cfg.dropout)

    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:  # (B, T, H)
        out = self.act(masked_conv(self.conv[i], hidden, ctx.real, *self.pad))
        return self.layer_norm[i](hidden + self.dropout(out))


@ENCODERS.register("gatedcnn", config=GatedCnnConfig)
class GatedCnnEncoder(Encoder):
    """Gated linear units (Dauphin et al. 2017): ``(X*W + b) * sigmoid(X*V + c)``.

    Kernels are padded on the left only (causal): position t sees positions <= t, so the
    encoder can serve a language model. One encoder layer is one residual block of
    ``block_size`` gated convolutions: ``x + glu_k(...glu_1(x))``.
    """

    causal = True

    def __init__(self, cfg: GatedCnnConfig) -> None:
        super().__init__()
        if cfg.kernel_size < 1 or cfg.block_size < 1:
            raise ValueError(f"kernel_size and block_size must be >= 1, got {cfg.kernel_size}, {cfg.block_size}")
        self.cfg = cfg
        self.layers_num = cfg.layers_num
        self.output_size = cfg.hidden_size
        # One convolution gives both halves (values and gates): (H -> 2H), split by F.glu.
        self.conv = nn.ModuleList(
            nn.ModuleList(nn.Conv1d(cfg.hidden_size, 2 * cfg.hidden_size, cfg.kernel_size) for _ in range(cfg.block_size))
            for _ in range(cfg.layers_num)
        )
        self.dropout = Dropout(cfg.dropout)

    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:  # (B, T, H)
        x = hidden
        for conv in self.conv[i]:
            x = F.glu(masked_conv(conv, x, ctx.real, self.cfg.kernel_size - 1, 0), dim=-1)
        return hidden + self.dropout(x)
