"""Early exit, layer by layer, on whole batches.

After every layer its branch gives each sample a distribution over the labels (a sigmoid per
label for multi-label models, the value for regression: ``FastBertTarget.activation``), and an exit
policy (``uer.exit.policies``; FastBERT's normalised entropy below ``speed`` by default)
says which samples leave. In a batch the samples that leave are taken out (``ctx.select``) and,
when the longest remaining sample is shorter, the padding columns too, so the layers that follow
run on a smaller tensor. Every operation is per sample (attention is masked, pooling is masked),
so a sample's result does not depend on its batch or its padding.

One loop steps through the layers (:meth:`EarlyExit.layers`); early exit, every branch's output
and the full model are three ways of consuming it. ``speed = 0`` never exits early under every
policy: the last branch, the teacher, decides, as in the full model. ``speed >= 1`` exits every
sample after layer 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Sequence

import torch
from torch import nn

from uer.exit.policies import DEFAULT, Policy, normalized_entropy, resolve
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

    ``runtime``: one of ``uer.runtime.runtime_names("sentence")`` (the work inside each layer and
    branch; the exit loop is this class).
    """

    def __init__(self, model: nn.Module, runtime: str = "auto", quantize: str | None = None) -> None:
        from uer.runtime import make_runtime

        self.model = model.eval()
        self.device = next(model.parameters()).device  # inputs are moved here by the callers
        self.target = fastbert_target(model)
        self.layers_num = len(self.target.branches)
        self.runtime = make_runtime(model, runtime, quantize=quantize)
        self.name, self.reason, self.quantize = self.runtime.name, self.runtime.reason, quantize

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
        if rule.never_early(speed):  # the full model itself: no student branch runs
            return ExitResult(self.full_model_probs(src, seg), torch.full((b,), self.layers_num, dtype=torch.long, device=src.device))
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


def exits_for_speeds(layer_probs: torch.Tensor, speeds: Sequence[float], policy: Policy = DEFAULT) -> list[ExitResult]:
    """From (N, layers, labels) probabilities, what early exit at each speed returns: the same
    policy calls as :meth:`EarlyExit.predict`, on every row at every layer."""
    rule = resolve(policy)
    n, layers, labels = layer_probs.shape
    rows = torch.arange(n, device=layer_probs.device)
    results = []
    for speed in speeds:
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
