import torch
from torch import nn

from uer.layers.attention import MultiHeadAttention
from uer.layers.feed_forward import FeedForward
from uer.layers.norms import make_norm


class TransformerLayer(nn.Module):
    """One block. ``post`` = BERT (norm after each residual add), ``pre`` = GPT-2 (norm before)."""

    def __init__(
        self,
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
        self.dropout_1 = nn.Dropout(dropout)
        self.dropout_2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # (B, T, H)
        if self.pre_norm:
            x = x + self.dropout_1(self.self_attn(self.layer_norm_1(x), mask))
            return x + self.dropout_2(self.feed_forward(self.layer_norm_2(x)))
        x = self.layer_norm_1(x + self.dropout_1(self.self_attn(x, mask)))
        return self.layer_norm_2(x + self.dropout_2(self.feed_forward(x)))
