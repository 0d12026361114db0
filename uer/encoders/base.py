"""What every encoder offers: the whole stack, every layer's output, or one layer at a time.

Segment ids follow UER: 0 = padding, 1 = first sentence (or prefix), 2 = second sentence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def real_length(seg: torch.Tensor) -> int:
    """Columns up to the batch's last real token (>= 1): what is left after cutting padding-only columns."""
    cols = (seg > 0).any(0).nonzero()
    return int(cols[-1]) + 1 if cols.numel() else 1


@dataclass
class EncoderContext:
    """What the layers of one batch share: the real-token mask and the attention mask built from it."""

    seg: torch.Tensor  # (B, T) long, 0 = padding
    # bool, broadcastable to (B, heads, T, T), True = may attend; or float scores to add (ALiBi), -inf = never
    attn_mask: torch.Tensor | None

    @property
    def real(self) -> torch.Tensor:  # (B, T) bool, True = real token
        return self.seg > 0

    def select(self, index: torch.Tensor) -> "EncoderContext":
        """The context of a sub-batch (FastBERT drops samples that have exited)."""
        mask = None if self.attn_mask is None else self.attn_mask[index]
        return EncoderContext(self.seg[index], mask)


class Encoder(nn.Module):
    """Subclasses set ``layers_num`` and ``output_size`` and implement ``context`` and ``layer``.

    ``causal``: position t never sees a position after t (an LM can train on it). A class
    attribute; an encoder whose config decides it (the transformer's ``mask``) sets it per instance.
    """

    layers_num: int
    output_size: int
    causal: bool = False

    def context(self, seg: torch.Tensor) -> EncoderContext:
        return EncoderContext(seg, None)

    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:
        """Run layer ``i`` (0-based): (B, T, H) -> (B, T, output_size)."""
        raise NotImplementedError

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """Applied after the last layer (e.g. GPT-2's final norm); identity by default."""
        return hidden

    def forward_layers(self, emb: torch.Tensor, seg: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, the last one finished: ``layers_num`` x (B, T, output_size)."""
        ctx = self.context(seg)
        outputs, hidden = [], emb
        for i in range(self.layers_num):
            hidden = self.layer(i, hidden, ctx)
            outputs.append(hidden)
        outputs[-1] = self.finish(outputs[-1])
        return outputs

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, output_size)."""
        ctx = self.context(seg)
        hidden = emb
        for i in range(self.layers_num):
            hidden = self.layer(i, hidden, ctx)
        return self.finish(hidden)
