import math

import torch
from torch import nn

from uer.encoders.base import Encoder, EncoderContext
from uer.encoders.configs import TransformerConfig
from uer.encoders.registry import ENCODERS
from uer.layers import TransformerLayer, make_norm


def attention_mask(seg: torch.Tensor, kind: str) -> torch.Tensor:
    """Bool mask, True = may attend. (B, 1, 1, T) for fully visible, (B, 1, T, T) otherwise."""
    keys = (seg > 0)[:, None, None, :]  # padding is never attended to
    if kind == "fully_visible":
        return keys
    t = seg.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=seg.device).tril()  # (T, T) query i sees j <= i
    if kind == "causal":
        return keys & causal
    if kind == "causal_with_prefix":  # UER's prefix LM: segment 1 is visible to every query
        prefix = (seg == 1)[:, None, None, :]
        return keys & (causal | prefix)
    raise ValueError(f"unknown mask {kind!r}")


def alibi_slopes(heads_num: int) -> torch.Tensor:
    """Per-head ALiBi slopes: 1/2, 1/4, ..., 1/256 spread over the heads.

    The paper's rule for n heads is the geometric sequence 2^(-8/n), 2^(-16/n), ... (for n not a power
    of two, the power below plus every other slope of the power above). With n >= 8 that is used as is.
    With fewer heads it would leave a small model only flat windows (2 heads: 1/16 and 1/256), and
    such a model climbs off the frequent-token plateau no faster than with learned positions; so n < 8
    heads take the first n slopes of the 8-head sequence (2 heads: 1/2 and 1/4), keeping a sharp
    local head. Measured in bench/pretrain_defaults.py."""
    def powers(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (k + 1) for k in range(n)]

    if heads_num < 8:
        return torch.tensor(powers(8)[:heads_num])
    low = 2 ** int(math.floor(math.log2(heads_num)))
    slopes = powers(low)
    if low < heads_num:
        slopes += powers(2 * low)[0::2][: heads_num - low]
    return torch.tensor(slopes)


def alibi_mask(seg: torch.Tensor, kind: str, heads_num: int) -> torch.Tensor:
    """The additive form of :func:`attention_mask` with ALiBi: (B, heads, T, T) float scores to add,
    ``-slope_h * |i - j|`` where attending is allowed and ``-inf`` where it is not."""
    t = seg.shape[1]
    pos = torch.arange(t, device=seg.device)
    distance = (pos[None, :] - pos[:, None]).abs().float()  # (T, T)
    bias = -alibi_slopes(heads_num).to(seg.device)[:, None, None] * distance  # (heads, T, T)
    allowed = attention_mask(seg, kind).expand(seg.shape[0], heads_num, t, t)
    return bias.expand_as(allowed).masked_fill(~allowed, float("-inf"))


def encoder_mask(seg: torch.Tensor, kind: str, alibi_heads: int = 0) -> torch.Tensor:
    """What a transformer's attention takes: :func:`alibi_mask` for ``alibi_heads`` > 0 heads, else
    the boolean :func:`attention_mask` (the eager encoder and ``uer.fused`` both build it here)."""
    return alibi_mask(seg, kind, alibi_heads) if alibi_heads else attention_mask(seg, kind)


@ENCODERS.register("transformer", config=TransformerConfig)
class TransformerEncoder(Encoder):
    """Self-attention layers: BERT (post-LN) or GPT-2 (pre-LN); full, causal or prefix masks; optional ALBERT sharing."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers_num = cfg.layers_num
        self.output_size = cfg.hidden_size
        self.causal = cfg.mask == "causal"  # a prefix LM's prefix sees the whole prefix
        self.alibi_heads = cfg.heads_num if cfg.position_bias == "alibi" else 0  # 0: no ALiBi scores
        distinct = 1 if cfg.parameter_sharing else cfg.layers_num
        self.transformer = nn.ModuleList(
            TransformerLayer(
                hidden_size=cfg.hidden_size, heads_num=cfg.heads_num, feedforward_size=cfg.feedforward_size,
                dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, act=cfg.act, norm=cfg.layernorm,
                norm_eps=cfg.layernorm_eps, positioning=cfg.layernorm_positioning, bias=cfg.bias,
            )
            for _ in range(distinct)
        )
        # Pre-LN stacks end with a norm (GPT-2's ln_f); post-LN stacks are already normalised.
        pre = cfg.layernorm_positioning == "pre"
        self.final_norm = make_norm(cfg.layernorm, cfg.hidden_size, cfg.layernorm_eps) if pre else nn.Identity()

    def context(self, seg: torch.Tensor) -> EncoderContext:
        return EncoderContext(seg, encoder_mask(seg, self.cfg.mask, self.alibi_heads))

    def block(self, i: int) -> TransformerLayer:
        """The module of layer ``i`` (0-based); with ALBERT sharing, the same one for every ``i``."""
        return self.transformer[0 if self.cfg.parameter_sharing else i]

    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:
        return self.block(i)(hidden, ctx.attn_mask)

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.final_norm(hidden)
