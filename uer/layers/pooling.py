import torch

from uer.choices import POOLINGS


def pool(hidden: torch.Tensor, real: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, T, H), (B, T) bool real-token mask -> (B, H). Padding never leaks into the result."""
    if kind == "first":
        return hidden[:, 0]
    if kind == "mean":
        weights = real.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    if kind == "max":
        return hidden.masked_fill(~real.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
    if kind == "last":
        last = real.long().sum(1).clamp_min(1) - 1  # (B,) index of the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(POOLINGS)}")
