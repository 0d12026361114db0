import torch
import torch.nn.functional as F
from torch import nn


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
        b, t, h = x.shape
        # (B, T, 3H) -> 3 x (B, heads, T, head_size)
        q, k, v = self.qkv(x).view(b, t, 3, self.heads_num, self.head_size).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, T, head_size)
        return self.output(out.transpose(1, 2).reshape(b, t, h))
