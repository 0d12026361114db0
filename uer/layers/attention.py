from __future__ import annotations

from typing import Any

import torch
from torch import nn

from uer.layers.executor import Eager, LayerExecutor, X


class MultiHeadAttention(nn.Module):
    """Self-attention through ``F.scaled_dot_product_attention``.

    Q, K and V come from one fused projection (one GEMM instead of three); the HuggingFace
    converter splits and joins it exactly.
    """

    def __init__(self, hidden_size: int, heads_num: int, dropout: float, bias: bool = True) -> None:
        super().__init__()
        if hidden_size % heads_num:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by heads_num {heads_num}")
        self.heads_num = heads_num
        self.head_size = hidden_size // heads_num
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.output = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, H); mask: bool, True = may attend, broadcastable to (B, heads, T, T)."""
        return self.compute(x, Eager(mask))

    def compute(self, x: X, ex: LayerExecutor[X, Any], dropout: nn.Module | None = None, residual: X | None = None,
                norm: nn.Module | None = None) -> X:
        """The maths, once, on an executor (see ``uer.layers.executor``):
        ``residual + dropout(attention(norm(x)))``; ``norm`` None: attention on ``x`` itself."""
        values = ex.attend(ex.qkv(self.qkv, x, norm), self.heads_num, self.dropout if self.training else 0.0)
        return ex.linear(self.output, values, dropout=dropout, residual=residual)
