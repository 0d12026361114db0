"""Early exit runs only where it pays (``uer.exit.pays``): the expected-cost model, the exit profile,
the plan a model keeps (a threshold speed), and a runner on a scripted runtime whose step costs are
sleeps, so that the costs it measures are known: with a large per-step overhead a low speed runs the
full model (exactly its answer, no step at all); with none, early exit runs as the policy says."""
import math
import time
from collections import Counter

import pytest
import torch

from tests.test_fastbert import LABELS, batch, fastbert_model
from uer.exit.checks import policy_spec
from uer.exit.pays import PAYS_BELOW, ExitPlan, ExitProfile, StepCosts, expected_seconds, make_plan, plan
from uer.fastbert.inference import EarlyExit, exits_for_speeds
from uer.runtime import make_runtime
from uer.runtime.base import Flow, Runtime

LAYERS = 4
ENTROPY = policy_spec("entropy")


def profile_of(shares: dict[float, tuple[float, ...]]) -> ExitProfile:
    speeds = sorted(shares)
    return ExitProfile(ENTROPY, LAYERS, tuple(speeds), tuple(shares[s] for s in speeds), 100)


# speed -> share of rows leaving after layers 1..4: few early exits at 0.25, many at 0.75, all at layer 1 at 1
PROFILE = profile_of({0.0: (0, 0, 0, 1), 0.25: (0.1, 0.1, 0.1, 0.7), 0.75: (0.4, 0.3, 0.2, 0.1), 1.0: (1, 0, 0, 0)})


def mean_exit(share) -> float:
    return sum((layer + 1) * q for layer, q in enumerate(share))


# ------------------------------------------------------------------------------------ the cost model
def test_without_overhead_early_exit_costs_its_share_of_the_layers():
    """Steps that cost exactly a layer of the full model, no shrinking cost: early exit's expected time
    is the mean exit layer over the layers, at batch 1 exactly and in batches too."""
    layer = 1e-3
    costs = StepCosts((1, 8), (LAYERS * layer, LAYERS * 8 * layer), (layer, 8 * layer), keep=0.0)
    for speed, share in zip(PROFILE.speeds, PROFILE.shares):
        survival = PROFILE.survival(speed)
        assert math.isclose(sum(survival[:-1]), mean_exit(share))
        for b in (1, 32):
            assert math.isclose(expected_seconds(survival, costs, b) / costs.full_at(b), mean_exit(share) / LAYERS,
                                rel_tol=1e-9), (speed, b)
        assert plan(PROFILE, costs, speed).step == (mean_exit(share) / LAYERS <= PAYS_BELOW), speed  # 0: 1.0x


def test_with_a_large_overhead_only_the_speeds_that_skip_enough_layers_step():
    layer = 1e-3  # each step costs 3 layers of the full model: it pays below a third of the layers on average
    costs = StepCosts((1, 8), (LAYERS * layer, LAYERS * 8 * layer), (3 * layer, 24 * layer), keep=0.0)
    decisions = {s: plan(PROFILE, costs, s) for s in PROFILE.speeds}
    assert [decisions[s].step for s in PROFILE.speeds] == [False, False, False, True]
    assert decisions[0.25].ratios[1] == pytest.approx(3 * mean_exit(PROFILE.shares[1]) / LAYERS)
    assert "full depth" in decisions[0.75].reason and "early exit" in decisions[1.0].reason
    # shrinking costs count in batches only: a batch of one never shrinks
    dear = StepCosts((1, 8), costs.full, costs.step, keep=1.0)
    assert expected_seconds(PROFILE.survival(0.75), dear, 1) == expected_seconds(PROFILE.survival(0.75), costs, 1)
    assert expected_seconds(PROFILE.survival(0.75), dear, 32) > expected_seconds(PROFILE.survival(0.75), costs, 32) + 0.9


def test_profile_from_exits_round_trips_and_interpolates():
    exits = [torch.tensor([4, 4, 4, 4]), torch.tensor([1, 2, 4, 4]), torch.tensor([1, 1, 1, 1])]
    profile = ExitProfile.of(exits, [0.0, 0.5, 1.0], LAYERS, ENTROPY)
    assert profile.shares[1] == (0.25, 0.25, 0.0, 0.5) and profile.rows == 4
    assert ExitProfile.from_dict(profile.as_dict()) == profile
    assert profile.survival(0.5) == [1.0, 0.75, 0.5, 0.5, 0.0]
    assert profile.survival(0.25) == pytest.approx([1.0, 0.875, 0.75, 0.75, 0.0])  # halfway between 0 and 0.5
    with pytest.raises(ValueError, match="exit layers must lie in 1..4"):
        ExitProfile.of([torch.tensor([5])], [0.5], LAYERS, ENTROPY)
    with pytest.raises(ValueError, match="summing to 1"):
        profile_of({0.5: (0.5, 0.0, 0.0, 0.0)})
    with pytest.raises(ValueError, match="expected a dict with keys"):
        ExitProfile.from_dict({"layers": 4})


# ------------------------------------------------------------------------------------ on a runner
class Scripted(Runtime):
    """The eager runtime, plus sleeps that make the costs known: each exit step ``extra`` seconds plus
    ``layer`` seconds per row; the full model ``layers * layer`` seconds per row. ``calls`` counts."""

    name = "scripted"

    def __init__(self, model, extra: float, layer: float) -> None:
        self.eager = make_runtime(model, "eager")
        self.layers_num, self.reason = self.eager.layers_num, "a test's"
        self.extra, self.layer = extra, layer
        self.calls: Counter = Counter()

    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return ScriptedFlow(self, self.eager.begin(src, seg))

    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        self.calls["full"] += 1
        time.sleep(self.layers_num * self.layer * src.shape[0])
        return self.eager.full_logits(src, seg)


class ScriptedFlow(Flow):
    def __init__(self, rt: Scripted, inner: Flow) -> None:
        self.rt, self.inner = rt, inner

    @property
    def seg(self) -> torch.Tensor:
        return self.inner.seg

    def step(self, i: int, branch: bool = True) -> torch.Tensor | None:
        self.rt.calls["step"] += 1
        time.sleep(self.rt.extra + self.rt.layer * self.inner.seg.shape[0])
        return self.inner.step(i, branch)

    def keep(self, index: torch.Tensor) -> None:
        self.inner.keep(index)


def scripted_runner(extra: float, layer: float):
    torch.set_num_threads(1)  # the real work stays small beside the sleeps (conftest restores the count)
    model = fastbert_model(layers=LAYERS)
    rt = Scripted(model, extra, layer)
    runner = EarlyExit(model, runtime=rt)
    runner.replan(PROFILE)  # the costs measured now, from the sleeps
    return runner, rt, EarlyExit(model, runtime="eager")


def test_a_large_step_overhead_runs_the_full_model_at_a_low_speed():
    runner, rt, eager = scripted_runner(extra=0.01, layer=0.001)  # a step costs 11x a layer at batch 1
    costs = runner.exit_plan.costs
    assert costs.step[0] > 5 * costs.full[0] / LAYERS  # measured, from the sleeps
    low = runner.plan(0.25)
    assert not low.step and low.ratios[1] > 2 and low.ratios[32] > 1, low.reason
    src, seg = batch(n=6)
    rt.calls.clear()
    out = runner.predict(src, seg, 0.25)
    assert rt.calls == Counter(full=1)  # no step at all: never slower than the full model
    assert torch.equal(out.probs, runner.full_model_probs(src, seg)) and bool((out.exit_layer == LAYERS).all())
    torch.testing.assert_close(out.probs, eager.full_model_probs(src, seg), rtol=0, atol=0)
    one = runner.predict(src[:1], seg[:1], 0.25)  # alone as in the batch
    assert int(one.exit_layer) == LAYERS
    torch.testing.assert_close(one.probs[0], out.probs[0], rtol=1e-4, atol=1e-5)
    # speed 0: the full model, bit for bit, with or without a profile
    assert torch.equal(runner.predict(src, seg, 0.0).probs, eager.predict(src, seg, 0.0).probs)
    # what the sweep reports follows the plan: the teacher at the last layer where the runner runs it
    swept = exits_for_speeds(runner.layer_probs(src, seg), [0.25], runner=runner)[0]
    assert torch.equal(swept.exit_layer, out.exit_layer)
    torch.testing.assert_close(swept.probs, out.probs, rtol=1e-4, atol=1e-5)


def test_without_step_overhead_early_exit_runs_as_the_policy_says():
    runner, rt, eager = scripted_runner(extra=0.0, layer=0.003)
    decision = runner.plan(0.75)  # half the layers on average: 0.5x, plus the real work of the steps
    assert decision.step and decision.ratios[1] < 0.9 and decision.ratios[32] < 0.9, decision.reason
    src, seg = batch(n=6)
    rt.calls.clear()
    out, reference = runner.predict(src, seg, 0.75), eager.predict(src, seg, 0.75)
    assert rt.calls["step"] > 0 and rt.calls["full"] == 0
    assert torch.equal(out.exit_layer, reference.exit_layer)
    torch.testing.assert_close(out.probs, reference.probs, rtol=0, atol=0)
    # another policy than the profile's: no measure of what it saves, so it steps as that policy says
    other = runner.plan(0.25, "confidence")
    assert other.step and "plan is of policy" in other.reason


@pytest.mark.parametrize("runtime", ["eager", "fused", "onnxruntime"])
def test_a_planned_runner_keeps_results_independent_of_the_batch(runtime):
    """Costs given (not measured): early exit pays at the profiled 0.75 and 1.0, not at 0.25, so the
    plan steps from 0.75 on (0.5 lies below it). Every sample's result is the same alone and in the
    batch at every speed, and what the sweep computes offline."""
    model = fastbert_model(layers=LAYERS)
    layer = 1e-3
    costs = StepCosts((1, 8), (LAYERS * layer, LAYERS * 8 * layer), (1.25 * layer, 10 * layer), keep=0.0)
    runner = EarlyExit(model, runtime=runtime, plan=make_plan(PROFILE, costs, "a test's numbers").as_dict())
    assert runner.exit_plan.from_speed == 0.75
    assert [runner.plan(s).step for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == [False, False, False, True, True]
    src, seg = batch(n=8)
    lengths = (seg > 0).sum(1)
    speeds = (0.0, 0.25, 0.5, 0.75, 1.0)
    swept = exits_for_speeds(runner.layer_probs(src, seg), speeds, runner=runner)
    for speed, expected in zip(speeds, swept):
        together = runner.predict(src, seg, speed)
        assert torch.equal(together.exit_layer, expected.exit_layer), speed
        torch.testing.assert_close(together.probs, expected.probs, rtol=1e-4, atol=1e-5)
        for i in range(len(src)):
            n = int(lengths[i])
            alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed)
            assert int(alone.exit_layer) == int(together.exit_layer[i]), (speed, i)
            torch.testing.assert_close(alone.probs[0], together.probs[i], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exit profile of 3 layers for a model of 4"):
        runner.replan(ExitProfile(ENTROPY, 3, (0.5,), ((0.5, 0.25, 0.25),), 4), costs=costs)
    assert LABELS == together.probs.shape[1]


# ------------------------------------------------------------------------------------ the plan a model keeps
def test_the_plan_steps_from_the_smallest_speed_from_which_on_every_profiled_speed_pays():
    layer = 1e-3
    full = (LAYERS * layer, LAYERS * 8 * layer)
    cheap = StepCosts((1, 8), full, (layer, 8 * layer), keep=0.0)  # a step costs a layer: pays wherever rows leave
    assert make_plan(PROFILE, cheap, "x").from_speed == 0.25  # speed 0: every row at the last layer, 1.0x: no gain
    dear = StepCosts((1, 8), full, (5 * layer, 40 * layer), keep=0.0)  # 5 layers a step: pays nowhere here
    assert make_plan(PROFILE, dear, "x").from_speed is None
    # a speed that does not pay above one that does: the threshold lies above both (never a hole in the middle)
    odd = profile_of({0.25: (0.9, 0, 0, 0.1), 0.5: (0, 0, 0.1, 0.9), 0.75: (0.8, 0.1, 0.1, 0), 1.0: (1, 0, 0, 0)})
    mid = StepCosts((1, 8), full, (1.5 * layer, 12 * layer), keep=0.0)
    assert [plan(odd, mid, s).step for s in odd.speeds] == [True, False, True, True]
    kept = make_plan(odd, mid, "x")
    assert kept.from_speed == 0.75 and not kept.steps_at(0.25) and not kept.steps_at(0.7) and kept.steps_at(0.8)
    assert "full depth at speed 0.25: early exit pays from speed 0.75 on" in kept.decide(0.25).reason


def test_a_plan_round_trips_through_plain_data_and_refuses_a_damaged_one():
    costs = StepCosts((1, 8), (4e-3, 3e-2), (1.2e-3, 9e-3), keep=1e-4)
    kept = make_plan(PROFILE, costs, "Intel test CPU, eager runtime, 2 threads")
    data = kept.as_dict()
    assert ExitPlan.from_dict(data) == kept
    assert set(data["ratios"]) == {"0", "0.25", "0.75", "1"} and set(data["ratios"]["0.25"]) == {"1", "32"}
    with pytest.raises(ValueError, match="expected a dict with keys"):
        ExitPlan.from_dict({k: v for k, v in data.items() if k != "costs"})
    with pytest.raises(ValueError, match="costs must be a dict"):
        ExitPlan.from_dict({**data, "costs": [1, 2]})
    with pytest.raises(ValueError, match=r"rows must be \(1, b > 1\)"):
        ExitPlan.from_dict({**data, "costs": {**data["costs"], "rows": [8, 1]}})
    with pytest.raises(ValueError, match="exit plan of 4 layers for a model of 2"):
        EarlyExit(fastbert_model(layers=2), runtime="eager", plan=data)
