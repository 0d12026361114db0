"""``multi_label_entropy``: a sample leaves when it is sure about every label: the largest binary
entropy of its per-label sigmoids, divided by log 2, is below ``speed``.

A multi-label branch gives each label its own probability p_j (a sigmoid, not one distribution);
the doubt about label j is H(p_j) = -p_j log p_j - (1 - p_j) log(1 - p_j), at most log 2 (p_j = 0.5).
The sample's doubt is its most doubtful label: leaving when the *mean* were low would let one
undecided label go out with the others. Entropy is >= 0, so speed 0 never exits early; speed 1
exits every sample after layer 1 (as for every policy)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class MultiLabelEntropyConfig:
    pass


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., labels) per-label probabilities -> (..., labels) entropy in nats (0 log 0 = 0)."""
    return -(torch.special.xlogy(probs, probs) + torch.special.xlogy(1 - probs, 1 - probs))


@POLICIES.register("multi_label_entropy", config=MultiLabelEntropyConfig)
class MultiLabelEntropyPolicy(ExitPolicy):
    """``max_j H(p_j) / log 2 < speed``, tested as ``max_j H(p_j) < speed * log 2``."""

    task = "multi_label"

    def __init__(self, cfg: MultiLabelEntropyConfig = MultiLabelEntropyConfig()) -> None:
        self.cfg = cfg

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        return binary_entropy(probs).amax(-1) < state.speed * math.log(2.0)
