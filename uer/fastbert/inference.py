"""Early exit, layer by layer, on whole batches.

A sample leaves at the first layer whose branch is sure enough: normalised entropy
``H(p) / log(labels)`` below ``speed``. In a batch the samples that exit are taken out
(``ctx.select``) and, when the longest remaining sample is shorter, the padding columns too, so
the layers that follow run on a smaller tensor. Every operation is per sample (attention is
masked, pooling is masked), so a sample's result does not depend on its batch or its padding.

``speed = 0`` never exits early (entropy is >= 0): the last branch, the teacher, decides, as in
the full model. ``speed >= 1`` exits every sample after layer 1 (normalised entropy is <= 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from uer.fused import optimize_for_inference
from uer.targets.fastbert import FastBertTarget, FrozenBranch


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., labels) probabilities -> (...) entropy / log(labels), in [0, 1]."""
    entropy = -torch.special.xlogy(probs, probs).sum(-1)
    return (entropy / math.log(probs.shape[-1])).clamp(0.0, 1.0)


def exit_mask(probs: torch.Tensor, speed: float, last: bool) -> torch.Tensor:
    """Which samples leave at this layer: (B,) bool. Same test as ``normalized_entropy(probs) < speed``,
    with the normalisation moved to the threshold (fewer operations per layer)."""
    if last or speed >= 1.0:
        return torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    return -torch.special.xlogy(probs, probs).sum(-1) < speed * math.log(probs.shape[-1])


def fastbert_target(model: nn.Module) -> FastBertTarget:
    for component in model.target.components.values():
        if isinstance(component, FastBertTarget):
            return component
    raise ValueError(f"the model has no fastbert target (targets: {', '.join(model.target.components)})")


def inference_encoder(model: nn.Module, fused: bool):
    """The encoder's per-layer step API: ``(encoder, backend, reason)``.

    ``fused``: through ``uer.fused`` where it supports the encoder, else eager (the reason says why)."""
    if not fused:
        return model.encoder, "eager", "asked for eager"
    encoder = optimize_for_inference(model.embedding, model.encoder)
    return encoder, encoder.backend, encoder.reason


def branch_mask(seg: torch.Tensor) -> torch.Tensor | None:
    """(B, T) real-token mask for the branches, or None when the batch has no padding."""
    real = seg > 0
    return None if bool(real.all()) else real


def trim_padding(src: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns after the last real token of the batch (padding-only columns)."""
    cols = (seg > 0).any(0).nonzero()
    width = int(cols[-1]) + 1 if cols.numel() else 1
    return src[:, :width], seg[:, :width]


@dataclass
class ExitResult:
    probs: torch.Tensor  # (B, labels) at the exit layer
    exit_layer: torch.Tensor  # (B,) long, 1-based


class EarlyExit:
    """A trained FastBERT model prepared for inference.

    Example::

        runner = EarlyExit(model)
        result = runner.predict(src, seg, speed=0.3)    # result.probs, result.exit_layer
    """

    def __init__(self, model: nn.Module, fused: bool = True) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device  # inputs are moved here by the callers
        self.target = fastbert_target(model)
        self.encoder, self.backend, self.reason = inference_encoder(model, fused)
        self.layers_num = len(self.target.branches)
        self.branches = [FrozenBranch(b) for b in self.target.branches]  # snapshots, like the fused encoder

    @torch.inference_mode()
    def predict(self, src: torch.Tensor, seg: torch.Tensor, speed: float) -> ExitResult:
        """(B, T) ids and segments -> exit probabilities and layers; vectorised over the batch."""
        b = src.shape[0]
        src, seg = trim_padding(src, seg)
        if b == 1:
            return self._predict_one(src, seg, speed)
        lengths = (seg > 0).sum(1)  # (B,)
        padding = branch_mask(seg)  # (B, T) or None
        hidden = self.model.embed(src, seg)  # (B, T, H)
        ctx = self.encoder.context(seg)
        alive = torch.arange(b, device=src.device)  # original row of each remaining sample
        probs_out = torch.empty(b, self.target.labels_num, device=src.device)
        layer_out = torch.empty(b, dtype=torch.long, device=src.device)
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            hidden = self.encoder.layer(i, hidden, ctx)
            if last:
                hidden = self.encoder.finish(hidden)
            probs = torch.softmax(self.branches[i](hidden, padding).float(), dim=-1)  # (b, C)
            done = exit_mask(probs, speed, last)
            if bool(done.all()):
                probs_out[alive] = probs
                layer_out[alive] = i + 1
                break
            if bool(done.any()):
                probs_out[alive[done]] = probs[done]
                layer_out[alive[done]] = i + 1
                keep = (~done).nonzero().squeeze(1)
                alive, hidden, seg = alive[keep], hidden[keep], seg[keep]
                width = int(lengths[alive].max())  # right padding: real tokens come first
                if width < hidden.shape[1]:  # the longest samples left: drop padding columns
                    hidden, seg = hidden[:, :width], seg[:, :width]
                    ctx = self.encoder.context(seg)
                else:
                    ctx = ctx.select(keep)
                padding = branch_mask(seg)
        return ExitResult(probs_out, layer_out)

    def _predict_one(self, src: torch.Tensor, seg: torch.Tensor, speed: float) -> ExitResult:
        """Batch 1: the same steps as :meth:`predict` without the bookkeeping of a shrinking batch."""
        hidden = self.model.embed(src, seg)
        ctx = self.encoder.context(seg)
        padding = branch_mask(seg)  # None: one sample, cut to its length
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            hidden = self.encoder.layer(i, hidden, ctx)
            if last:
                hidden = self.encoder.finish(hidden)
            probs = torch.softmax(self.branches[i](hidden, padding).float(), dim=-1)  # (1, C)
            if bool(exit_mask(probs, speed, last)):
                return ExitResult(probs, torch.full((1,), i + 1, dtype=torch.long, device=src.device))
        raise AssertionError("unreachable: the last layer always exits")

    @torch.inference_mode()
    def all_layers(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Every branch's probabilities: (B, layers, labels). One pass serves every speed."""
        src, seg = trim_padding(src, seg)
        hidden = self.model.embed(src, seg)
        ctx = self.encoder.context(seg)
        padding = branch_mask(seg)
        out = []
        for i in range(self.layers_num):
            hidden = self.encoder.layer(i, hidden, ctx)
            if i == self.layers_num - 1:
                hidden = self.encoder.finish(hidden)
            out.append(torch.softmax(self.branches[i](hidden, padding).float(), dim=-1))
        return torch.stack(out, dim=1)

    @torch.inference_mode()
    def full_model(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The baseline: backbone + teacher only, no student branch. (B, labels) probabilities."""
        src, seg = trim_padding(src, seg)
        hidden = self.model.embed(src, seg)
        ctx = self.encoder.context(seg)
        for i in range(self.layers_num):
            hidden = self.encoder.layer(i, hidden, ctx)
        hidden = self.encoder.finish(hidden)
        return torch.softmax(self.branches[-1](hidden, branch_mask(seg)).float(), dim=-1)


def exits_for_speeds(layer_probs: torch.Tensor, speeds: Sequence[float]) -> list[ExitResult]:
    """From (N, layers, labels) probabilities, what early exit at each speed returns."""
    entropy = -torch.special.xlogy(layer_probs, layer_probs).sum(-1)  # (N, L), the comparison exit_mask makes
    n, layers, labels = layer_probs.shape
    rows = torch.arange(n)
    results = []
    for speed in speeds:
        leave = entropy < speed * math.log(labels)
        leave[:, -1] = True
        if speed >= 1.0:
            leave[:, 0] = True
        first = leave.int().argmax(1)  # the first layer that lets the sample leave
        results.append(ExitResult(layer_probs[rows, first], first + 1))
    return results
