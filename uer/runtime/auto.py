"""``auto``: the fastest exact runtime on this machine, found by timing the candidates at load.

CPUs rank engines differently (AVX2 vs AVX-512 vs AMX; on one machine ONNX Runtime wins at batch
1 and oneDNN in batches, on another the reverse), so the choice is measured, not assumed: each
candidate that can run the model (``fused``, and ``onnxruntime`` when installed and the model is on
the CPU) runs every step with its branch on a short text (1 x 24 tokens) and on a batch
(16 x 48 tokens), best of a few calls. Calls with at most ``SMALL_BATCH`` rows then run on the
winner of the first probe, larger ones on the winner of the second; ``reason`` gives the timings.
With ``quantize="int8"`` the only int8 runtime, ``onnxruntime``, is used.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig

CANDIDATES = ("fused", "onnxruntime")
SMALL_BATCH = 4
PROBES = {"small": (1, 24), "large": (16, 48)}  # (batch, tokens)
REPEATS = 5


def describe_timings(timings: dict[str, dict[str, float]]) -> str:
    """``{probe: {candidate: seconds}}`` -> ``"1x24: fused 0.92 ms, eager 1.13 ms; 16x48: ..."`` (fastest first)."""
    parts = []
    for probe, times in timings.items():
        b, t = PROBES[probe]
        parts.append(f"{b}x{t}: " + ", ".join(f"{n} {1000 * s:.2f} ms" for n, s in sorted(times.items(), key=lambda kv: kv[1])))
    return "; ".join(parts)


def _time(rt: Runtime, src: torch.Tensor, seg: torch.Tensor) -> float:
    def once() -> float:
        start = time.perf_counter()
        flow = rt.begin(src, seg)
        for i in range(rt.layers_num):
            flow.step(i)
        return time.perf_counter() - start

    once()
    return min(once() for _ in range(REPEATS))


@RUNTIMES.register("auto", config=RuntimeConfig)
class AutoRuntime(Runtime):
    """Dispatches each call to the runtime measured fastest for its batch size."""

    def __init__(self, cfg: RuntimeConfig, *, model: nn.Module, quantize: str | None = None) -> None:
        self.quantize = quantize
        if quantize is not None:
            self.small = self.large = RUNTIMES.cls("onnxruntime")(cfg, model=model, quantize=quantize)
            self._describe({}, "int8 runs on onnxruntime only")
            return
        built, skipped = {}, []
        for name in CANDIDATES:
            try:
                built[name] = RUNTIMES.cls(name)(cfg, model=model)
            except ValueError as e:
                skipped.append(str(e))
        vocab = model.embedding.word.num_embeddings
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(0)
        timings: dict[str, dict[str, float]] = {}
        for probe, (b, t) in PROBES.items():
            src = torch.randint(1, vocab, (b, t), generator=gen).to(device)
            seg = torch.ones_like(src)
            timings[probe] = {name: _time(rt, src, seg) for name, rt in built.items()}
        pick = {probe: min(times, key=times.get) for probe, times in timings.items()}
        self.small, self.large = built[pick["small"]], built[pick["large"]]
        self._describe(timings, "; ".join(skipped))

    def _describe(self, timings: dict, note: str) -> None:
        self.layers_num = self.small.layers_num
        if self.small is self.large or self.small.name == self.large.name:
            self.name = self.small.name
        else:
            self.name = f"{self.small.name} (batch <= {SMALL_BATCH}), {self.large.name} (larger)"
        measured = describe_timings(timings)
        self.reason = "auto, measured at load: " + measured if measured else f"auto: {note}"
        if measured and note:
            self.reason += f" (not candidates: {note})"
        if self.small is self.large:
            self.reason += f"; {self.small.reason}"
        self.timings = timings

    def _for(self, src: torch.Tensor) -> Runtime:
        return self.small if src.shape[0] <= SMALL_BATCH else self.large

    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return self._for(src).begin(src, seg)

    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self._for(src).full_logits(src, seg)
