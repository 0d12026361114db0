"""Early exit, layer by layer, on whole batches.

After every layer its branch gives each sample a distribution over the labels (a sigmoid per
label for multi-label models, the value for regression: ``FastBertTarget.activation``), and an exit
policy (``uer.exit.policies``; FastBERT's normalised entropy below ``speed`` by default)
says which samples leave. In a batch the samples that leave are taken out (``ctx.select``) and,
when the longest remaining sample is shorter, the padding columns too, so the layers that follow
run on a smaller tensor. Every operation is per sample (attention is masked, pooling is masked),
so a sample's result does not depend on its batch or its padding.

One loop steps through the layers (:meth:`EarlyExit.layers`); early exit and every branch's output
are two ways of consuming it. ``speed = 0`` never exits early under every policy: the last branch,
the teacher, decides, as in the full model. ``speed >= 1`` exits every sample after layer 1.

Only where it pays. Each step costs more than a layer of the full model (the branch, the exit
test, the shrinking), so at a low speed, where few samples leave early, early exit can be slower
than the full model. A runner given an exit plan (:class:`uer.exit.pays.ExitPlan`, which
``run_fastbert.py`` makes from the dev set and keeps in the checkpoint) runs early exit only at
the speeds from the plan's ``from_speed`` on, else the full model itself: the teacher's answer and
every sample at the last layer. The decision never depends on the batch, so a sample's result
stays the same alone and inside any batch; without a plan (or for a policy the plan was not made
with) early exit always runs, as the policy says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import torch
from torch import nn

from uer.exit.checks import policy_spec
from uer.exit.pays import BATCHES, ExitPlan, ExitProfile, Plan, StepCosts, make_plan
from uer.exit.sweep import timed
from uer.exit.policies import DEFAULT, ExitPolicy, Policy, PolicyState, normalized_entropy, resolve
from uer.runtime.base import Runtime
from uer.targets.fastbert import FastBertTarget, fastbert_target

__all__ = ["EarlyExit", "ExitResult", "exits_for_speeds", "fastbert_target", "normalized_entropy"]


@dataclass
class ExitResult:
    probs: torch.Tensor  # (B, labels) at the exit layer
    exit_layer: torch.Tensor  # (B,) long, 1-based


class EarlyExit:
    """A trained FastBERT model prepared for inference.

    Example::

        runner = EarlyExit(model)                                   # runtime "auto": measured at load
        result = runner.predict(src, seg, speed=0.3)                # result.probs, result.exit_layer
        result = runner.predict(src, seg, 0.3, policy="patience")
        runner.name, runner.reason                                  # the runtime in effect, and why
        EarlyExit(model, runtime="onnxruntime", quantize="int8")    # int8 weights

        runner = EarlyExit(model, plan=extra["exit_plan"])          # early exit only where it pays
        runner.plan(0.1).reason                                     # e.g. "full depth: early exit pays from speed 0.3 on ..."

    ``runtime``: one of ``uer.runtime.runtime_names("sentence")`` (the work inside each layer and
    branch; the exit loop is this class), or a :class:`~uer.runtime.base.Runtime` built for ``model``.
    ``plan``: an :class:`~uer.exit.pays.ExitPlan` (or its ``as_dict()``): see :meth:`use_plan`.
    """

    def __init__(self, model: nn.Module, runtime: str | Runtime = "auto", quantize: str | None = None,
                 plan: ExitPlan | dict[str, Any] | None = None) -> None:
        from uer.runtime import make_runtime

        self.model = model.eval()
        self.device = next(model.parameters()).device  # inputs are moved here by the callers
        self.target = fastbert_target(model)
        self.layers_num = len(self.target.branches)
        if isinstance(runtime, Runtime):
            if quantize is not None or runtime.layers_num != self.layers_num:
                raise ValueError(f"runtime {runtime.name!r}: a built runtime takes no quantize= and must have the "
                                 f"model's {self.layers_num} layers (it has {runtime.layers_num})")
            self.runtime = runtime
        else:
            self.runtime = make_runtime(model, runtime, quantize=quantize)
        self.name, self.reason, self.quantize = self.runtime.name, self.runtime.reason, quantize
        self.exit_plan: ExitPlan | None = None
        self._plans: dict[tuple, Plan] = {}
        if plan is not None:
            self.use_plan(plan)

    def use_plan(self, exit_plan: ExitPlan | dict[str, Any] | None) -> None:
        """Early exit from now on only at the speeds ``exit_plan`` says it pays (None: everywhere)."""
        if exit_plan is not None and not isinstance(exit_plan, ExitPlan):
            exit_plan = ExitPlan.from_dict(exit_plan)
        if exit_plan is not None and exit_plan.profile.layers != self.layers_num:
            raise ValueError(f"exit plan of {exit_plan.profile.layers} layers for a model of {self.layers_num}")
        self.exit_plan, self._plans = exit_plan, {}

    def replan(self, profile: ExitProfile | None = None, costs: StepCosts | None = None) -> ExitPlan:
        """A new plan for this machine and runtime, used from now on: ``profile`` (default: the current
        plan's) with ``costs`` (default: measured now, :func:`measure_costs`)."""
        profile = profile if profile is not None else self.exit_plan.profile if self.exit_plan else None
        if profile is None:
            raise ValueError("replan: this runner has no exit plan, so give the exit profile to plan with")
        if profile.layers != self.layers_num:
            raise ValueError(f"exit profile of {profile.layers} layers for a model of {self.layers_num}")
        self.use_plan(make_plan(profile, costs if costs is not None else measure_costs(self), self.where()))
        return self.exit_plan

    def where(self) -> str:
        """The CPU (or GPU), runtime and threads this runner runs on: what a plan's costs depend on."""
        from uer.runtime.cpu import cpu_features

        here = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_features().summary()
        return f"{here}, {self.name} runtime, {torch.get_num_threads()} threads"

    def plan(self, speed: float, policy: Policy = DEFAULT) -> Plan:
        """What :meth:`predict` does at ``speed`` under ``policy``: early exit (``step``) or the full model, and why."""
        rule = resolve(policy)
        key = (type(rule), rule.cfg, float(speed))
        if key not in self._plans:
            self._plans[key] = self._plan(rule, float(speed))
        return self._plans[key]

    def _plan(self, rule: ExitPolicy, speed: float) -> Plan:
        if rule.never_early(speed):
            return Plan(False, {}, "full model: the policy never exits early at this speed")
        kept = self.exit_plan
        if kept is None:
            return Plan(True, {}, "early exit: no exit plan, so no measure of what it saves")
        if policy_spec(rule) != kept.profile.policy:
            return Plan(True, {}, f"early exit: the exit plan is of policy {kept.profile.policy}, not this one")
        return kept.decide(speed)

    def layers(self, src: torch.Tensor, seg: torch.Tensor, students: bool = True
               ) -> Generator[tuple[int, torch.Tensor | None], torch.Tensor | None, None]:
        """The one layer loop: yields ``(layer index, probs)`` after every layer, ``probs`` (b, labels)
        for the samples still in the batch (None at the students' layers when ``students=False``).

        ``send(keep)`` a (b', ) index of the rows that stay to drop the others (None keeps all): the
        layers after run on the smaller batch, cut to its longest sample. Call under inference mode."""
        flow = self.runtime.begin(src, seg)
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            logits = flow.step(i, branch=students or last)
            probs = None if logits is None else self.target.activation(logits.float()).to(src.device)
            keep = yield i, probs
            if keep is not None:
                flow.keep(keep.to(flow.seg.device))  # a no-op where both live on one device

    @torch.inference_mode()
    def predict(self, src: torch.Tensor, seg: torch.Tensor, speed: float, policy: Policy = DEFAULT) -> ExitResult:
        """(B, T) ids and segments -> exit probabilities and layers; vectorised over the batch."""
        rule = resolve(policy)
        b = src.shape[0]
        if not self.plan(speed, rule).step:  # the full model itself: no student branch runs
            return ExitResult(self.full_model_probs(src, seg), torch.full((b,), self.layers_num, dtype=torch.long, device=src.device))
        return self._early_exit(src, seg, speed, rule)

    def _early_exit(self, src: torch.Tensor, seg: torch.Tensor, speed: float, rule: ExitPolicy) -> ExitResult:
        b = src.shape[0]
        state = rule.start(b, self.target.labels_num, self.layers_num, speed)
        if b == 1:  # one text (the deployment case): nothing to shrink, fewer operations per layer
            flow = self.runtime.begin(src, seg)
            for i in range(self.layers_num):
                probs = self.target.activation(flow.step(i).float()).to(src.device)
                if bool(rule.exits(probs, i, state, last=i == self.layers_num - 1)):
                    return ExitResult(probs, torch.tensor([i + 1], device=src.device))
        alive = torch.arange(b, device=src.device)  # original row of each remaining sample
        probs_out = torch.empty(b, self.target.labels_num, device=src.device)
        layer_out = torch.empty(b, dtype=torch.long, device=src.device)
        steps = self.layers(src, seg)
        i, probs = next(steps)
        while True:
            done = rule.exits(probs, i, state, last=i == self.layers_num - 1)
            if bool(done.all()):  # always true at the last layer
                if alive.shape[0] == b:  # nobody left before: the whole batch leaves here
                    return ExitResult(probs, layer_out.fill_(i + 1))
                probs_out[alive], layer_out[alive] = probs, i + 1
                return ExitResult(probs_out, layer_out)
            keep = None
            if bool(done.any()):
                probs_out[alive[done]], layer_out[alive[done]] = probs[done], i + 1
                keep = (~done).nonzero().squeeze(1)
                alive, state = alive[keep], state.select(keep)
            i, probs = steps.send(keep)

    @torch.inference_mode()
    def layer_probs(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Every branch's probabilities: (B, layers, labels). One pass serves every speed and policy."""
        return torch.stack([probs for _, probs in self.layers(src, seg)], dim=1)

    @torch.inference_mode()
    def full_model_probs(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The baseline: backbone + teacher only, no student branch. (B, labels) probabilities."""
        return self.target.activation(self.runtime.full_logits(src, seg).float()).to(src.device)


def exits_for_speeds(layer_probs: torch.Tensor, speeds: Sequence[float], policy: Policy = DEFAULT,
                     runner: EarlyExit | None = None) -> list[ExitResult]:
    """From (N, layers, labels) probabilities, what early exit at each speed returns: the same
    policy calls as :meth:`EarlyExit.predict`, on every row at every layer.

    ``runner``: follow its :meth:`~EarlyExit.plan` too: at a speed where it runs the full model,
    the teacher's output at the last layer (what its ``predict`` returns there)."""
    rule = resolve(policy)
    n, layers, labels = layer_probs.shape
    rows = torch.arange(n, device=layer_probs.device)
    results = []
    for speed in speeds:
        if runner is not None and not runner.plan(speed, rule).step:
            results.append(ExitResult(layer_probs[:, -1], torch.full((n,), layers, dtype=torch.long, device=layer_probs.device)))
            continue
        state = rule.start(n, labels, layers, speed)
        first = torch.full((n,), layers - 1, dtype=torch.long, device=layer_probs.device)
        waiting = torch.ones(n, dtype=torch.bool, device=layer_probs.device)
        for i in range(layers):
            done = rule.exits(layer_probs[:, i], i, state, last=i == layers - 1)
            first[waiting & done] = i  # the first layer that lets the sample leave
            waiting &= ~done
            if not bool(waiting.any()):
                break
        results.append(ExitResult(layer_probs[rows, first], first + 1))
    return results


class _Stay(ExitPolicy):
    """No row leaves before the last layer, yet every step runs: what early exit costs per step."""

    def never_early(self, speed: float) -> bool:
        return False

    def decide(self, probs: torch.Tensor, layer: int, state: PolicyState) -> torch.Tensor:
        return torch.zeros(probs.shape[0], dtype=torch.bool, device=probs.device)


# measured at the batch sizes the plan is judged at: from 1 and 8 rows a step at 32 extrapolated to
# 1.8x a layer of the full model on ONNX Runtime, where 32 rows measured 1.5x (1.2x since the
# softmax change; the plan had kept the full model up to speed 0.7 instead of 0.5; Xeon, 2 cores)
PROBE_ROWS, PROBE_TOKENS, REPEATS = BATCHES, 32, 5


@torch.inference_mode()
def measure_costs(runner: EarlyExit) -> StepCosts:
    """:class:`~uer.exit.pays.StepCosts` of ``runner`` on this machine, at ``PROBE_ROWS`` rows of
    ``PROBE_TOKENS`` random tokens: the full model, every step with its branch and exit test (no
    row leaving; per step), and ``Flow.keep`` from 32 rows to 16 (its bookkeeping in ``predict`` aside).

    What the plan reads is the ratio of a step to the full model, so at each batch size the kinds
    take turns call by call (one engine serves a batch size: none slows the other) and each keeps
    its best of ``REPEATS`` rounds after a warm-up round: on a shared machine a slow spell spoils a
    round for every kind alike, not one kind's block (timed in blocks, a step at 8 rows measured
    1.6x the full model's per layer on a loaded 2-core machine, against 1.1x when quiet)."""
    embedding = runner.model.embedding
    tokens = min(PROBE_TOKENS, embedding.max_seq_length or PROBE_TOKENS)
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randint(1, embedding.word.num_embeddings, (b, tokens), generator=gen).to(runner.device)
              for b in PROBE_ROWS}
    rows, stay = PROBE_ROWS[1], _Stay()
    half = torch.arange(0, rows, 2, device=runner.device)
    nothing = lambda: None  # noqa: E731  (the calls that need no untimed setup)

    def first_step() -> Any:  # untimed: a flow of ``rows`` rows after its first step
        flow = runner.runtime.begin(inputs[rows], torch.ones_like(inputs[rows]))
        flow.step(0)
        return flow

    best: dict[str, float] = {}
    for b, src in inputs.items():  # a block per batch size: ``auto`` may run another engine for each
        calls: dict[str, tuple[Callable[[], Any], Callable[[Any], object]]] = {
            f"full{b}": (nothing, lambda _: runner.full_model_probs(src, torch.ones_like(src))),
            f"step{b}": (nothing, lambda _: runner._early_exit(src, torch.ones_like(src), 0.5, stay))}
        if b == rows:
            calls["keep"] = (first_step, lambda flow: flow.keep(half.to(flow.seg.device)))
        for k in range(REPEATS + 1):
            for name, (setup, run) in calls.items():
                arg = setup()
                spent = timed(lambda: run(arg), runner.device)
                if k:  # round 0 warms the code paths up
                    best[name] = min(best.get(name, spent), spent)
    layers = runner.layers_num
    return StepCosts(PROBE_ROWS, (best["full1"], best[f"full{rows}"]),
                     (best["step1"] / layers, best[f"step{rows}"] / layers), best["keep"])
