"""Parameters and FLOPs of an assembled model, for ``python -m uer summary``."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from uer.model import Model


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (tied / shared weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def encoder_flops(model: Model, seq_length: int) -> int:
    """FLOPs of embedding + encoder for one sample of ``seq_length`` real tokens (counted by torch)."""
    src = torch.full((1, seq_length), 1, dtype=torch.long)
    seg = torch.ones(1, seq_length, dtype=torch.long)
    model.eval()
    with FlopCounterMode(display=False) as counter:  # its module tracker needs autograd on
        model.encode(src, seg)
    return counter.get_total_flops()


def summarize(model: Model, seq_length: int) -> str:
    lines = [f"model from {model.config.source}"]
    for name, child in model.named_children():
        lines.append(f"  {name:<11} {type(child).__name__:<22} {count_parameters(child):>13,} parameters")
        if name in ("embedding", "target"):
            for sub, part in child.components.items():
                lines.append(f"    {sub:<9} {type(part).__name__:<22} {count_parameters(part):>13,}")
    lines.append(f"  total{'':<29} {count_parameters(model):>13,} parameters (shared weights counted once)")
    flops = encoder_flops(model, seq_length)
    how = "counted by torch"
    if flops == 0:  # FlopCounterMode has no rule for the fused RNN ops: every weight is one MAC per token
        weights = sum(p.numel() for p in model.encoder.parameters() if p.ndim >= 2)
        flops, how = 2 * weights * seq_length, "estimated as 2 x encoder weights x tokens"
    lines.append(f"  embedding + encoder: {flops / 1e9:.3f} GFLOPs per sample at {seq_length} tokens ({how})")
    return "\n".join(lines)
