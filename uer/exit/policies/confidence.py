"""``confidence``: leave when the top probability is above ``1 - speed * (1 - 1/labels)``.

The threshold runs from 1 at speed 0 (a probability is never above 1: no early exit) down to
1/labels at speed 1 (the floor of the top probability; speed 1 exits every sample at layer 1)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class ConfidenceConfig:
    pass


def confidence_threshold(speed: float, labels: int) -> float:
    return 1.0 - speed * (1.0 - 1.0 / labels)


@POLICIES.register("confidence", config=ConfidenceConfig)
class ConfidencePolicy(ExitPolicy):
    """``max(p) > 1 - speed * (1 - 1/labels)``."""

    def __init__(self, cfg: ConfidenceConfig = ConfidenceConfig()) -> None:
        self.cfg = cfg

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        return probs.amax(-1) > confidence_threshold(state.speed, probs.shape[-1])
