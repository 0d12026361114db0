import torch
from torch import nn

from uer.layers.activations import activation
from uer.layers.executor import Eager


class FeedForward(nn.Module):
    """Position-wise ``linear_2(act(linear_1(x)))``."""

    def __init__(self, hidden_size: int, feedforward_size: int, act: str, bias: bool = True) -> None:
        super().__init__()
        activation(act)  # an unknown name fails here, at build time
        self.act = act
        self.linear_1 = nn.Linear(hidden_size, feedforward_size, bias=bias)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., H)
        return self.compute(x, Eager(None))

    def compute(self, x, ex, dropout: nn.Module | None = None, residual=None):
        """The maths, once, on an executor: ``residual + dropout(linear_2(act(linear_1(x))))``."""
        return ex.linear(self.linear_2, ex.linear(self.linear_1, x, act=self.act), dropout=dropout, residual=residual)
