"""What a sentence-exit (FastBERT) runtime is: the work inside each exit step, the early-exit loop staying ours.

A *step* is layer ``i`` followed by its branch (step 0 embeds first; the last step applies the
encoder's final norm). A runtime runs steps on one batch through a :class:`Flow`::

    flow = runtime.begin(src, seg)           # (B, T) ids and segments, cut to the longest sample
    logits = flow.step(0)                    # (B, labels) after layer 1
    flow.keep(index)                         # only these rows go on (the batch shrinks)
    logits = flow.step(1, branch=False)      # None: the caller does not need this branch

``runtime.full_logits(src, seg)`` is the full model (every layer, the teacher only).
Runtimes live in :data:`RUNTIMES` (``uer.runtime``); each names itself and says why it was chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.encoders.base import real_length
from uer.registry import Registry


@dataclass(frozen=True)
class RuntimeConfig:
    """Runtimes take no options from a config; ``quantize`` comes from the caller."""


class Flow:
    """One batch on its way through the steps. ``seg`` is the remaining rows' segments, cut to width."""

    seg: torch.Tensor

    def step(self, i: int, branch: bool = True) -> torch.Tensor | None:
        raise NotImplementedError

    def keep(self, index: torch.Tensor) -> None:
        raise NotImplementedError


class Runtime:
    """``name``: the engine in effect; ``reason``: why; ``quantize``: None or ``"int8"``."""

    name = "?"
    reason = ""
    quantize: str | None = None
    layers_num = 0

    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        raise NotImplementedError

    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The teacher's logits after every layer, no student branch on the way (the baseline)."""
        flow = self.begin(src, seg)
        layers = self.layers_num
        for i in range(layers):
            logits = flow.step(i, branch=i == layers - 1)
        return logits


def cut_to_width(src: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padding-only columns never enter a step."""
    width = real_length(seg)
    return src[:, :width], seg[:, :width]


RUNTIMES: Registry[Runtime] = Registry("runtime", base="uer.runtime.base:Runtime")
