"""What an exit policy is: a rule, applied after every layer's branch, that says which rows leave.

A row is a sample for sentence exit (``uer.fastbert``) and a token still in the network for token
exit (``uer.tagging``); the rule is the same.

    state = policy.start(batch, labels, layers, speed)      # per-sample state for one batch
    done = policy.exits(probs, layer, state, last)          # (B,) bool, probs (B, labels) at this layer
    state = state.select(keep)                              # the samples that stay, in their new order

The same two calls serve the online decision (``EarlyExit.predict``, whose batch shrinks as
samples leave) and the offline sweep over stored per-layer probabilities (``exits_for_speeds``).
Every policy reads ``speed`` in [0, 1] the same way: 0 never exits before the last layer (the
full model), 1 exits every sample after layer 1; the last layer always lets every sample go.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PolicyState:
    """The state of one batch. Stateless rules keep only ``speed``; ``select`` follows the samples."""

    speed: float

    def select(self, index: torch.Tensor) -> "PolicyState":
        return self


class ExitPolicy:
    """Subclasses implement :meth:`decide` (and :meth:`start` when they keep per-sample state)."""

    # what ``probs`` holds: "classification" (a distribution per row), "multi_label" (a sigmoid per
    # label) or "regression" (the predicted value, (B, 1)); a command refuses a policy of another task
    task = "classification"

    def start(self, batch: int, labels: int, layers: int, speed: float) -> PolicyState:
        return PolicyState(speed)

    def never_early(self, speed: float) -> bool:
        """True when no sample can leave before the last layer at ``speed`` (every policy: speed 0),
        so that the caller may run the full model instead, without the students' branches."""
        return speed <= 0.0

    def exits(self, probs: torch.Tensor, layer: int, state: PolicyState, last: bool) -> torch.Tensor:
        """(B, labels) probabilities after layer ``layer`` (0-based) -> (B,) bool: who leaves here."""
        if last or state.speed >= 1.0:
            return torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
        return self.decide(probs, layer, state)

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        raise NotImplementedError


def shannon_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., labels) -> (...) Shannon entropy in nats (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., labels) probabilities -> (...) entropy / log(labels), in [0, 1]."""
    return (shannon_entropy(probs) / math.log(probs.shape[-1])).clamp(0.0, 1.0)
