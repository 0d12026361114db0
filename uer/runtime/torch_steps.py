"""The PyTorch runtimes: ``eager`` (the model's modules, the reference) and ``fused`` (``uer.fused``)."""
from __future__ import annotations

import torch
from torch import nn

from uer.encoders.base import real_length
from uer.fused import optimize_for_inference
from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig, cut_to_width
from uer.runtime.support import unsupported
from uer.targets.fastbert import FrozenBranch, fastbert_target


def branch_real(seg: torch.Tensor) -> torch.Tensor | None:
    """(B, T) real-token mask for the branches, or None when the batch has no padding."""
    real = seg > 0
    return None if bool(real.all()) else real


class TorchFlow(Flow):
    def __init__(self, rt: "TorchRuntime", src: torch.Tensor, seg: torch.Tensor) -> None:
        self.rt = rt
        src, self.seg = cut_to_width(src, seg)
        self.hidden = rt.model.embed(src, self.seg)  # (B, T, H)
        self.ctx = rt.encoder.context(self.seg)
        self.real = branch_real(self.seg)

    @torch.inference_mode()
    def step(self, i: int, branch: bool = True) -> torch.Tensor | None:
        rt = self.rt
        self.hidden = rt.encoder.layer(i, self.hidden, self.ctx)
        if i == rt.layers_num - 1:
            self.hidden = rt.encoder.finish(self.hidden)
        return rt.branches[i](self.hidden, self.real) if branch else None

    @torch.inference_mode()
    def keep(self, index: torch.Tensor) -> None:
        hidden, seg = self.hidden[index], self.seg[index]
        width = real_length(seg)
        if width < hidden.shape[1]:  # the longest samples left: drop padding columns
            self.hidden, self.seg = hidden[:, :width], seg[:, :width]
            self.ctx = self.rt.encoder.context(self.seg)
        else:
            self.hidden, self.seg, self.ctx = hidden, seg, self.ctx.select(index)
        self.real = branch_real(self.seg)


class TorchRuntime(Runtime):
    fused = False

    def __init__(self, cfg: RuntimeConfig, *, model: nn.Module, quantize: str | None = None) -> None:
        why = unsupported(model, self.name, quantize)
        if why is not None:
            raise ValueError(f"runtime {self.name!r}: {why}")
        self.model = model
        target = fastbert_target(model)
        self.layers_num = len(target.branches)
        self.branches = [FrozenBranch(b) for b in target.branches]  # snapshots, like the fused encoder
        if self.fused:
            self.encoder = optimize_for_inference(model.embedding, model.encoder, mode="fused")
            self.reason = self.encoder.reason
        else:
            self.encoder, self.reason = model.encoder, "asked for eager"

    @torch.inference_mode()
    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return TorchFlow(self, src, seg)


@RUNTIMES.register("eager", config=RuntimeConfig)
class EagerRuntime(TorchRuntime):
    """The model's own modules: the reference every other runtime is tested against."""

    name = "eager"


@RUNTIMES.register("fused", config=RuntimeConfig)
class FusedRuntime(TorchRuntime):
    """``uer.fused``: unpadded oneDNN linears; refused where ``uer.fused`` does not cover the encoder."""

    name = "fused"
    fused = True
