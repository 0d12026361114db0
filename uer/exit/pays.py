"""Does early exit pay at a speed? Its expected seconds against the full model's, from what was measured.

Early exit runs one layer at a time and after each a student's branch, the exit test and, in a
batch, the shrinking of the batch; the full model runs the layers and one branch. At a low speed
few rows leave early, so the layers they skip can save less than that extra work costs at every
layer, and early exit is slower than no early exit. Whether it pays rests on two measurements,
each made where it can be made:

* :class:`ExitProfile`: how many rows leave after each layer at each speed. A property of the
  model, the exit policy and the data, not of the machine: ``run_fastbert.py`` sees it on the dev
  set (``ExitProfile.of``; ``uer.fastbert.evaluate.plan_exits``), and it travels with the model as
  plain data (``as_dict``/``from_dict``).
* :class:`StepCosts`: seconds of the full model, of one exit step (layer, branch, exit test) and of
  one shrinking, at one row and at a batch. A property of the machine and the runtime: measured
  where the plan is made (``uer.fastbert.inference.measure_costs``; ``EarlyExit.replan`` here).

:func:`plan` puts them together for one speed. The expected seconds of early exit for ``b`` rows,
each leaving after layer ``l`` with the profile's share ``q_l`` independently of the others, are::

    sum over steps i:   P(a row is still in at step i) * step(rows in at step i)
  + sum over steps i:   P(some rows leave after step i and some stay) * keep

with ``step`` and ``full`` linear in the rows between the two measured sizes; early exit pays at a
speed where this is at most :data:`PAYS_BELOW` of the full model's time at every batch size of
:data:`BATCHES` (a margin for the error of the estimate).

:class:`ExitPlan` is the decision a trained model keeps: made once where the model was trained
(:func:`make_plan`: the profile on held-out rows, the costs measured there), stored in the
checkpoint and the export manifest, read back as it is. Early exit runs at the speeds from
``from_speed`` on, where it paid at every profiled speed; below it the runner runs the full
model: the teacher's answer, every row at the last layer. A threshold rather than a table, so
that it reads in one line ("early exit from speed 0.3 on") and holds between the profiled speeds;
one decision per speed, never per batch, so a row's result does not depend on its batch; made
once, never re-measured at load, so a model answers alike on every machine that loads it
(``EarlyExit.replan`` measures here when a user asks).

    profile = ExitProfile.of([r.exit_layer for r in exits], speeds, layers, policy_spec(rule))
    decision = plan(profile, costs, speed)     # Plan(step=False, ratios={1: 1.07, 32: 1.02}, ...)
    kept = make_plan(profile, costs, "Intel Xeon ..., eager runtime, 2 threads")
    kept.from_speed, kept.as_dict()            # 0.3, plain data for extra["exit_plan"]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

# early exit pays where its expected time is at most this share of the full model's: the profile
# comes from the dev rows and the costs from random-token probes, and the main job's first plan,
# made at 1.0, stepped at speed 0.4 expecting 0.99x and ran at 0.86x speed 0's wall at batch 1
PAYS_BELOW = 0.9
BATCHES = (1, 32)  # where early exit must pay: one text (serving) and the predictors' default batch


@dataclass(frozen=True)
class ExitProfile:
    """The share of rows leaving after each layer, per speed, for one exit policy.

    ``shares[k][l]``: the share of rows whose exit layer is ``l + 1`` at ``speeds[k]`` (each list
    sums to 1); ``policy``: the policy's canonical spec (``uer.exit.checks.policy_spec``), since
    exits at a speed mean nothing under another rule; ``rows``: how many rows it was seen on."""

    policy: dict[str, Any]
    layers: int
    speeds: tuple[float, ...]
    shares: tuple[tuple[float, ...], ...]
    rows: int

    def __post_init__(self) -> None:
        if self.layers < 1 or not self.speeds or len(self.shares) != len(self.speeds):
            raise ValueError(f"exit profile: {len(self.speeds)} speeds and {len(self.shares)} share lists for "
                             f"{self.layers} layers")
        if list(self.speeds) != sorted(set(self.speeds)):
            raise ValueError(f"exit profile: speeds must increase, got {list(self.speeds)}")
        for speed, share in zip(self.speeds, self.shares):
            if len(share) != self.layers or min(share) < 0 or not math.isclose(sum(share), 1.0, abs_tol=1e-6):
                raise ValueError(f"exit profile at speed {speed:g}: {len(share)} shares summing to {sum(share):.6f}; "
                                 f"expected {self.layers} non-negative shares summing to 1")

    @classmethod
    def of(cls, exit_layers: Sequence[torch.Tensor], speeds: Sequence[float], layers: int,
           policy: dict[str, Any]) -> "ExitProfile":
        """From each speed's (N,) 1-based exit layers (what the sweep computes: ``ExitResult.exit_layer``;
        token exit: the real tokens' layers)."""
        shares = []
        for exits in exit_layers:
            exits = exits.reshape(-1).long()
            if exits.numel() == 0 or int(exits.min()) < 1 or int(exits.max()) > layers:
                raise ValueError(f"exit profile: exit layers must lie in 1..{layers} (and be some)")
            counts = torch.bincount(exits - 1, minlength=layers).double()
            shares.append(tuple(float(c) for c in counts / counts.sum()))
        order = sorted(range(len(speeds)), key=lambda k: speeds[k])
        return cls(dict(policy), layers, tuple(float(speeds[k]) for k in order), tuple(shares[k] for k in order),
                   int(exit_layers[0].numel()) if exit_layers else 0)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint's ``extra`` or a JSON report."""
        return {"policy": self.policy, "layers": self.layers, "speeds": list(self.speeds),
                "shares": [list(s) for s in self.shares], "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExitProfile":
        expected = {"policy", "layers", "speeds", "shares", "rows"}
        if not isinstance(data, dict) or set(data) != expected:
            raise ValueError(f"exit profile: expected a dict with keys {sorted(expected)}, got "
                             f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
        return cls(dict(data["policy"]), int(data["layers"]), tuple(float(s) for s in data["speeds"]),
                   tuple(tuple(float(x) for x in s) for s in data["shares"]), int(data["rows"]))

    def survival(self, speed: float) -> list[float]:
        """``S[i]``, i = 0..layers: the share of rows still in before step ``i`` (``S[0] = 1``,
        ``S[layers] = 0``), at ``speed``: between two profiled speeds, interpolated linearly;
        outside them, the nearest one's (below the lowest, its own: no fewer exits assumed)."""
        share = self._share(speed)
        out, left = [1.0], 1.0
        for q in share:
            left = max(0.0, left - q)
            out.append(left)
        out[-1] = 0.0
        return out

    def _share(self, speed: float) -> tuple[float, ...]:
        speeds = self.speeds
        if speed <= speeds[0]:
            return self.shares[0]
        if speed >= speeds[-1]:
            return self.shares[-1]
        k = next(k for k in range(1, len(speeds)) if speeds[k] >= speed)
        w = (speed - speeds[k - 1]) / (speeds[k] - speeds[k - 1])
        return tuple((1 - w) * a + w * b for a, b in zip(self.shares[k - 1], self.shares[k]))


@dataclass(frozen=True)
class StepCosts:
    """Seconds measured on this machine at ``rows[0]`` (1) and ``rows[1]`` rows of one length.

    ``full``: the full model (every layer, the teacher's branch); ``step``: one exit step, the mean
    over the layers of running every step with its branch and exit test (no row leaving); ``keep``:
    one shrinking of a batch of ``rows[1]`` rows to half (a batch of one never shrinks)."""

    rows: tuple[int, int]
    full: tuple[float, float]
    step: tuple[float, float]
    keep: float

    def __post_init__(self) -> None:
        if not 1 == self.rows[0] < self.rows[1]:
            raise ValueError(f"step costs: rows must be (1, b > 1), got {self.rows}")

    def _at(self, pair: tuple[float, float], rows: float) -> float:
        """Linear in the rows through the two measurements (never below 0)."""
        a, b = pair
        return max(0.0, a + (b - a) * (rows - 1) / (self.rows[1] - 1))

    def full_at(self, rows: float) -> float:
        return self._at(self.full, rows)

    def step_at(self, rows: float) -> float:
        return self._at(self.step, rows)


def expected_seconds(survival: Sequence[float], costs: StepCosts, batch: int) -> float:
    """Expected seconds of early exit on ``batch`` rows whose exit layers follow ``survival``
    (:meth:`ExitProfile.survival`), each row independently of the others."""
    layers = len(survival) - 1
    total = 0.0
    for i in range(layers):
        s, s_next = survival[i], survival[i + 1]
        running = 1.0 - (1.0 - s) ** batch  # some row still in at step i
        if running <= 0.0:
            break
        total += running * costs.step_at(batch * s / running)  # the rows in, given that the step runs
        if batch > 1 and i < layers - 1:  # some leave after step i and some stay: the batch shrinks
            leave = s - s_next
            shrink = 1.0 - (1.0 - leave) ** batch - (1.0 - s_next) ** batch + max(0.0, 1.0 - leave - s_next) ** batch
            total += max(0.0, shrink) * costs.keep
    return total


@dataclass(frozen=True)
class Plan:
    """What the runner does at one speed: ``step`` (early exit) or the full model, and why.
    ``ratios``: expected seconds of early exit over the full model's, per batch size."""

    step: bool
    ratios: dict[int, float]
    reason: str


def plan(profile: ExitProfile, costs: StepCosts, speed: float, batches: Sequence[int] = BATCHES) -> Plan:
    """Early exit at ``speed`` where it is expected to take at most :data:`PAYS_BELOW` of the full
    model's time at every size of ``batches``; the full model elsewhere."""
    survival = profile.survival(speed)
    ratios = {b: expected_seconds(survival, costs, b) / costs.full_at(b) for b in batches}
    shown = ", ".join(f"{r:.2f}x (batch {b})" for b, r in ratios.items())
    mean_exit = sum(survival[:-1])
    step = all(r <= PAYS_BELOW for r in ratios.values())
    what = "early exit" if step else "full depth"
    return Plan(step, ratios, f"{what}: early exit expected at {shown} the full model's time, "
                              f"{mean_exit:.2f} of {profile.layers} layers on average")


@dataclass(frozen=True)
class ExitPlan:
    """Where early exit pays for one trained model and exit policy: at speeds ``>= from_speed``
    (None: at no profiled speed); the full model below. ``profile`` and ``costs`` are what the
    decision was made from, ``measured_on`` where the costs were measured (CPU, runtime, threads)."""

    profile: ExitProfile
    costs: StepCosts
    from_speed: float | None
    measured_on: str

    def steps_at(self, speed: float) -> bool:
        return self.from_speed is not None and speed >= self.from_speed

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint's ``extra``, a report or a manifest."""
        c = self.costs
        return {"from_speed": self.from_speed, "measured_on": self.measured_on, "profile": self.profile.as_dict(),
                "costs": {"rows": list(c.rows), "full": list(c.full), "step": list(c.step), "keep": c.keep},
                "ratios": {f"{s:g}": {str(b): round(r, 4) for b, r in plan(self.profile, c, s).ratios.items()}
                           for s in self.profile.speeds}}

    @classmethod
    def from_dict(cls, data: Any) -> "ExitPlan":
        """What :meth:`as_dict` wrote (``ratios`` is recomputed, not read); a ValueError says what is wrong."""
        expected = {"from_speed", "measured_on", "profile", "costs", "ratios"}
        if not isinstance(data, dict) or set(data) != expected:
            raise ValueError(f"exit plan: expected a dict with keys {sorted(expected)}, got "
                             f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
        c = data["costs"]
        if not isinstance(c, dict) or set(c) != {"rows", "full", "step", "keep"}:
            raise ValueError("exit plan: costs must be a dict with keys ['full', 'keep', 'rows', 'step']")
        costs = StepCosts(tuple(int(r) for r in c["rows"]), tuple(float(x) for x in c["full"]),
                          tuple(float(x) for x in c["step"]), float(c["keep"]))
        from_speed = data["from_speed"]
        return cls(ExitProfile.from_dict(data["profile"]), costs, None if from_speed is None else float(from_speed),
                   str(data["measured_on"]))

    def decide(self, speed: float) -> Plan:
        """What the runner does at ``speed`` (the kept threshold, not :func:`plan`'s own verdict there),
        with the expected ratios there and why."""
        ratios = plan(self.profile, self.costs, speed).ratios
        shown = ", ".join(f"{r:.2f}x (batch {b})" for b, r in ratios.items())
        where = ("early exit paid at no profiled speed" if self.from_speed is None
                 else f"early exit pays from speed {self.from_speed:g} on")
        step = self.steps_at(speed)
        return Plan(step, ratios, f"{'early exit' if step else 'full depth'} at speed {speed:g}: {where} for this model "
                                  f"(expected at {speed:g}: {shown} the full model's time; costs measured on "
                                  f"{self.measured_on})")


def make_plan(profile: ExitProfile, costs: StepCosts, measured_on: str, batches: Sequence[int] = BATCHES) -> ExitPlan:
    """The plan a model keeps: early exit from the smallest profiled speed from which on it pays at
    every profiled speed (:func:`plan`); None where it does not pay at the largest."""
    from_speed = None
    for speed in reversed(profile.speeds):
        if not plan(profile, costs, speed, batches).step:
            break
        from_speed = speed
    return ExitPlan(profile, costs, from_speed, measured_on)
