from torch import nn


def make_norm(kind: str, size: int, eps: float) -> nn.Module:
    """``normal`` = LayerNorm (BERT), ``rms`` = RMSNorm (T5/LLaMA), ``none`` = identity."""
    if kind == "normal":
        return nn.LayerNorm(size, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(size, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown layernorm {kind!r}; valid: normal, rms, none")
