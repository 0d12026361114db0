"""``patience`` (PABEE, Zhou et al. 2020): leave when the predicted label has stayed the same for
``t`` consecutive layers after the one where it was first predicted.

``t = (1 - speed) * (layers - 1)`` rounded half up: speed 0 gives ``t = layers - 1``, which only the last
layer can reach (no early exit); speed 1 gives ``t = 0``, every sample leaves at layer 1.
The counters are per sample and follow the samples when the batch shrinks (``select``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class PatienceConfig:
    pass


def patience_for(speed: float, layers: int) -> int:
    # rounded to 9 places first, so that float noise ((1 - 0.9) * 5 = 0.4999...) does not decide
    return int(round((1.0 - speed) * (layers - 1), 9) + 0.5)


@dataclass
class PatienceState(PolicyState):
    patience: int  # t
    previous: torch.Tensor  # (B,) long, the argmax at the previous layer; -1 before layer 1
    count: torch.Tensor  # (B,) long, consecutive layers with an unchanged argmax

    def select(self, index: torch.Tensor) -> "PatienceState":
        return PatienceState(self.speed, self.patience, self.previous[index], self.count[index])


@POLICIES.register("patience", config=PatienceConfig)
class PatiencePolicy(ExitPolicy):
    """``count >= t``, where ``count`` grows by one at every layer whose argmax equals the previous
    layer's and drops to 0 when it changes."""

    def __init__(self, cfg: PatienceConfig = PatienceConfig()) -> None:
        self.cfg = cfg

    def start(self, batch: int, labels: int, layers: int, speed: float) -> PatienceState:
        none = torch.full((batch,), -1, dtype=torch.long)
        return PatienceState(speed, patience_for(speed, layers), none, torch.zeros(batch, dtype=torch.long))

    def decide(self, probs: torch.Tensor, layer: int, state: PatienceState) -> torch.Tensor:
        label = probs.argmax(-1)
        same = label == state.previous.to(label.device)
        state.count = torch.where(same, state.count.to(label.device) + 1, 0)
        state.previous = label
        return state.count >= state.patience
