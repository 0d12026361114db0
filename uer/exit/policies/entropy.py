"""``entropy`` (FastBERT, the default): leave when the normalised entropy is below ``speed``."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState, shannon_entropy
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class EntropyConfig:
    pass


@POLICIES.register("entropy", config=EntropyConfig)
class EntropyPolicy(ExitPolicy):
    """``H(p) / log(labels) < speed``, tested as ``H(p) < speed * log(labels)`` (fewer operations).

    Entropy is >= 0, so speed 0 never exits early."""

    def __init__(self, cfg: EntropyConfig = EntropyConfig()) -> None:
        self.cfg = cfg

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        return shannon_entropy(probs) < state.speed * math.log(probs.shape[-1])
