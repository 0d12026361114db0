from __future__ import annotations

from typing import Any

import torch
from torch import nn

from uer.layers.attention import MultiHeadAttention
from uer.layers.executor import Eager, LayerExecutor, X
from uer.layers.feed_forward import FeedForward
from uer.layers.norms import make_norm
from uer.layers.dropout import Dropout


class TransformerLayer(nn.Module):
    """One block. ``post`` = BERT (norm after each residual add), ``pre`` = GPT-2 (norm before).

    The maths is written once, in :meth:`compute`, as calls on an executor: ``forward`` runs it
    eagerly on (B, T, H); ``uer.fused`` runs the same calls on packed real tokens."""

    def __init__(
        self,
        *,
        hidden_size: int,
        heads_num: int,
        feedforward_size: int,
        dropout: float,
        attention_dropout: float,
        act: str,
        norm: str,
        norm_eps: float,
        positioning: str,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if positioning not in ("post", "pre"):
            raise ValueError(f"layernorm_positioning must be post or pre, got {positioning!r}")
        self.pre_norm = positioning == "pre"
        self.self_attn = MultiHeadAttention(hidden_size, heads_num, attention_dropout, bias)
        self.layer_norm_1 = make_norm(norm, hidden_size, norm_eps)
        self.feed_forward = FeedForward(hidden_size, feedforward_size, act, bias)
        self.layer_norm_2 = make_norm(norm, hidden_size, norm_eps)
        self.dropout_1 = Dropout(dropout)
        self.dropout_2 = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # (B, T, H)
        return self.compute(x, Eager(mask))

    def compute(self, x: X, ex: LayerExecutor[X, Any]) -> X:
        """``x`` in the executor's layout ((B, T, H) eager, (N, H) packed) -> the same layout."""
        attn, ffn = self.self_attn, self.feed_forward
        if self.pre_norm:  # the norm goes to the Q/K/V projection itself (LayerExecutor.qkv)
            x = attn.compute(x, ex, self.dropout_1, residual=x, norm=self.layer_norm_1)
            return ffn.compute(ex.norm(self.layer_norm_2, x), ex, self.dropout_2, residual=x)
        x = ex.norm(self.layer_norm_1, attn.compute(x, ex, self.dropout_1, residual=x))
        return ex.norm(self.layer_norm_2, ffn.compute(x, ex, self.dropout_2, residual=x))
