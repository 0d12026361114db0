import torch
from torch import nn

from uer.layers.activations import activation


class FeedForward(nn.Module):
    """Position-wise ``linear_2(act(linear_1(x)))``."""

    def __init__(self, hidden_size: int, feedforward_size: int, act: str, bias: bool = True) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(hidden_size, feedforward_size, bias=bias)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size, bias=bias)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., H)
        return self.linear_2(self.act(self.linear_1(x)))
