"""``regression_patience`` (PABEE's rule for regression, Zhou et al. 2020): a sample leaves when its
predicted value has stayed within ``tolerance`` of the previous layer's for ``t`` consecutive layers.

``speed`` sets both knobs, so that one number still orders the trade-off:

* patience ``t = (1 - speed) * (layers - 1)`` rounded half up (as ``patience``): speed 0 gives
  ``t = layers - 1``, which only the last layer could reach (no early exit), speed 1 gives 0;
* tolerance ``speed * max_tolerance`` (``max_tolerance`` 0.5 by default): at speed 0 two layers
  must agree exactly, and the tolerance widens as the patience shortens.

Values are in the model's output units: ``run_fastbert.py --task regression`` standardises the
targets, so the tolerance is in standard deviations of the training targets. The counters are
per sample and follow the samples when the batch shrinks (``select``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.exit.policies.base import ExitPolicy, PolicyState
from uer.exit.policies.patience import patience_for
from uer.exit.policies.registry import POLICIES


@dataclass(frozen=True)
class RegressionPatienceConfig:
    max_tolerance: float = 0.5  # the tolerance at speed 1, in output units


@dataclass
class RegressionPatienceState(PolicyState):
    patience: int  # t
    tolerance: float
    previous: torch.Tensor  # (B,) float, the value at the previous layer; NaN before layer 1 (agrees with nothing)
    count: torch.Tensor  # (B,) long, consecutive layers within the tolerance of the one before

    def select(self, index: torch.Tensor) -> "RegressionPatienceState":
        return RegressionPatienceState(self.speed, self.patience, self.tolerance, self.previous[index], self.count[index])


@POLICIES.register("regression_patience", config=RegressionPatienceConfig)
class RegressionPatiencePolicy(ExitPolicy):
    """``count >= t``; ``count`` grows by one at every layer whose value is within the tolerance of
    the previous layer's and drops to 0 otherwise. ``probs`` is (B, 1): the predicted values."""

    task = "regression"

    def __init__(self, cfg: RegressionPatienceConfig = RegressionPatienceConfig()) -> None:
        if not cfg.max_tolerance >= 0:
            raise ValueError(f"regression_patience needs max_tolerance >= 0, got {cfg.max_tolerance}")
        self.cfg = cfg

    def start(self, batch: int, labels: int, layers: int, speed: float) -> RegressionPatienceState:
        return RegressionPatienceState(speed, patience_for(speed, layers), speed * self.cfg.max_tolerance,
                                       torch.full((batch,), float("nan")), torch.zeros(batch, dtype=torch.long))

    def decide(self, probs: torch.Tensor, layer: int, state: RegressionPatienceState) -> torch.Tensor:
        value = probs[:, 0]
        same = (value - state.previous.to(value.device)).abs() <= state.tolerance  # NaN: False
        state.count = torch.where(same, state.count.to(value.device) + 1, 0)
        state.previous = value
        return state.count >= state.patience
