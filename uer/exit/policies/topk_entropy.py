"""``topk_entropy``: the entropy of the top ``k`` probabilities, renormalised, divided by log k,
below ``speed``.

With many labels the full normalised entropy stays near 1 even when the model is sure between
two of them (the tail of small probabilities carries most of the entropy); the top-k entropy
measures only the doubt among the leading candidates. ``k >= labels`` is the ``entropy`` policy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState, shannon_entropy
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class TopKEntropyConfig:
    k: int = 2


@POLICIES.register("topk_entropy", config=TopKEntropyConfig)
class TopKEntropyPolicy(ExitPolicy):
    """``H(top_k(p) / sum top_k(p)) < speed * log k``."""

    def __init__(self, cfg: TopKEntropyConfig = TopKEntropyConfig()) -> None:
        if cfg.k < 2:
            raise ValueError(f"topk_entropy needs k >= 2, got {cfg.k}")
        self.cfg = cfg

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        k = min(self.cfg.k, probs.shape[-1])
        top = probs.topk(k, dim=-1).values
        top = top / top.sum(-1, keepdim=True)
        return shannon_entropy(top) < state.speed * math.log(k)
