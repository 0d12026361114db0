import torch
from torch import nn

from uer.layers.executor import Eager


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

    def compute(self, x, ex, dropout: nn.Module | None = None, residual=None):
        """The maths, once, on an executor (see ``uer.layers.executor``): ``residual + dropout(attention(x))``."""
        values = ex.attend(ex.linear(self.qkv, x), self.heads_num, self.dropout if self.training else 0.0)
        return ex.linear(self.output, values, dropout=dropout, residual=residual)
