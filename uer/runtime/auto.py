"""``auto``: the fastest exact candidate on this machine, found by timing the candidates at load.

One mechanism for both kinds of exit. CPUs rank engines differently (AVX2 vs AVX-512 vs AMX; on
one machine ONNX Runtime wins at batch 1 and oneDNN in batches, on another the reverse), so the
choice is measured, not assumed. :func:`choose` runs every candidate on a short text (1 x 24
tokens) and on a batch (16 x 48 tokens); calls with at most ``SMALL_BATCH`` rows then run on the
winner of the first probe, larger ones on the winner of the second, and ``reason`` gives the
timings.

Token exit times every call at a sequence length not timed before (24, 23, 22, ...); sentence exit
at the probe's own shape (see ``AutoRuntime``). Each candidate is timed in a block of its own. Early exit hands the engines many different shapes (the rows still in vary by
layer and by batch); oneDNN builds a primitive for every new shape (its cache keeps 1,024), and a
probe that repeats one shape hides that cost (measured on token exit: 792 against 377 us per
128x512 linear over 400 random row counts, but 119 against 132 us at one fixed count). Each
candidate's time is the median of its ``REPEATS`` timed calls (the first call warms up): on a
shared machine a slow spell then spoils one call, not the choice.

Sentence exit (``AutoRuntime`` below) chooses among the runtimes that can run the model (on the
CPU ``fused`` and ``onnxruntime``; on CUDA ``eager``, ``fused`` and ``onnxruntime`` on ONNX
Runtime's CUDA provider, where the installed onnxruntime has it); token exit
(``uer.tagging.inference.TokenExit``) among its linears (``eager``, ``fused``). With
``quantize="int8"`` the int8 runtime (``onnxruntime int8``) is timed beside the fp32 candidates and
kept only at the probes where it is the fastest: where int8 is slower, fp32 runs and ``reason``
says so. Whether int8 keeps its accuracy needs labelled data: ``run_fastbert.py --quantize int8``
judges that (``uer.fastbert.report.int8_verdict``). On CUDA every timed call ends with
``torch.cuda.synchronize()``.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Mapping, TypeVar

import torch
from torch import nn

from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig
from uer.runtime.support import unsupported

CANDIDATES = {"cpu": ("fused", "onnxruntime"), "cuda": ("eager", "fused", "onnxruntime")}  # by device type
SMALL_BATCH = 4
PROBES = {"small": (1, 24), "large": (16, 48)}  # (batch, tokens)
REPEATS = 5
T = TypeVar("T")


def describe_timings(timings: dict[str, dict[str, float]]) -> str:
    """``{probe: {candidate: seconds}}`` -> ``"1x24: fused 0.92 ms, eager 1.13 ms; 16x48: ..."`` (fastest first)."""
    parts = []
    for probe, times in timings.items():
        b, t = PROBES[probe]
        parts.append(f"{b}x{t}: " + ", ".join(f"{n} {1000 * s:.2f} ms" for n, s in sorted(times.items(), key=lambda kv: kv[1])))
    return "; ".join(parts)


@dataclass
class Choice(Generic[T]):
    """What ``auto`` chose: ``small`` for batches of at most ``SMALL_BATCH`` rows, ``large`` above."""

    small: T
    large: T
    name: str  # e.g. "fused", or "onnxruntime (batch <= 4), fused (larger)"
    reason: str
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # {probe: {candidate: seconds}}

    def for_batch(self, rows: int) -> T:
        return self.small if rows <= SMALL_BATCH else self.large


def measure(candidates: Mapping[str, T], run: Callable[[T, torch.Tensor, torch.Tensor], object], vocab: int,
            device: torch.device | str = "cpu", longest: int | None = None,
            fresh_shapes: bool = True) -> dict[str, dict[str, float]]:
    """Seconds per call of ``run(candidate, src, seg)`` at each probe: ``{probe: {name: seconds}}``.

    ``vocab``: ids are drawn from 1..vocab-1; ``longest``: the model's longest sequence, if any;
    ``fresh_shapes``: every timed call at a length not timed before (else the probe's own length)."""
    gen = torch.Generator().manual_seed(0)
    timings: dict[str, dict[str, float]] = {}
    for probe, (b, t) in PROBES.items():
        t = min(t, longest) if longest else t
        inputs = [torch.randint(1, vocab, (b, max(2, t - k) if fresh_shapes else t), generator=gen).to(device)
                  for k in range(REPEATS + 1)]
        timings[probe] = {}
        # One candidate at a time: ONNX Runtime's threads spin on after a call and slow the torch
        # call that follows, so calls taking turns time fused ~40% slow (116 against 81 ms at 16x48
        # here) and picked the wrong engine.
        for name, candidate in candidates.items():
            seconds = []
            for k, src in enumerate(inputs):
                start = time.perf_counter()
                with torch.inference_mode():
                    run(candidate, src, torch.ones_like(src))
                if torch.device(device).type == "cuda":  # the kernels queued must have run
                    torch.cuda.synchronize(device)
                if k:  # the first call warms the code paths up
                    seconds.append(time.perf_counter() - start)
            timings[probe][name] = statistics.median(seconds)
    return timings


def choose(candidates: Mapping[str, T], run: Callable[[T, torch.Tensor, torch.Tensor], object], vocab: int,
           device: torch.device | str = "cpu", longest: int | None = None, note: str = "",
           fresh_shapes: bool = True) -> Choice[T]:
    """The measured choice among ``candidates`` (one candidate: no measurement); ``note`` goes into
    the reason (e.g. why other runtimes were no candidates)."""
    if not candidates:
        raise ValueError("auto: no candidate to choose from")
    if len(candidates) == 1:
        (name, only), = candidates.items()
        return Choice(only, only, name, f"auto: {name}, the only candidate" + (f" ({note})" if note else ""))
    timings = measure(candidates, run, vocab, device, longest, fresh_shapes)
    pick = {probe: min(times, key=times.get) for probe, times in timings.items()}
    small, large = pick["small"], pick["large"]
    name = small if small == large else f"{small} (batch <= {SMALL_BATCH}), {large} (larger)"
    reason = "auto, measured at load: " + describe_timings(timings) + (f" (not candidates: {note})" if note else "")
    return Choice(candidates[small], candidates[large], name, reason, timings)


def _steps(rt: Runtime, src: torch.Tensor, seg: torch.Tensor) -> None:
    """Every exit step with its branch: what early exit at a low speed runs."""
    flow = rt.begin(src, seg)
    for i in range(rt.layers_num):
        flow.step(i)


def quantized_note(choice: Choice, name: str) -> str:
    """What became of the quantized candidate ``name`` in ``choice``: kept at every probe, or which
    fp32 candidate runs where it was slower (with both times)."""
    slower = []
    for probe, times in choice.timings.items():
        best = min(times, key=times.get)
        if best != name:
            b, t = PROBES[probe]
            slower.append(f"{b}x{t}: {name} {1000 * times[name]:.2f} ms against {best} {1000 * times[best]:.2f} ms")
    if not slower:
        return f"{name} kept: the fastest at every probe"
    where = "everywhere" if len(slower) == len(choice.timings) else "there"
    return f"{name} slower than fp32 ({'; '.join(slower)}): fp32 runs {where}"


def fp32_candidates(cfg: RuntimeConfig, model: nn.Module) -> tuple[dict[str, Runtime], list[str]]:
    """The fp32 runtimes that can run ``model`` on its device, built, and why the others cannot."""
    device = next(model.parameters()).device
    built, skipped = {}, []
    for name in CANDIDATES.get(device.type, ("eager",)):
        why = unsupported(model, name)
        try:
            if why is None:
                built[name] = RUNTIMES.cls(name)(cfg, model=model)
        except ValueError as e:  # what only building finds (the device, a missing ONNX Runtime provider)
            why = str(e)
        if why is not None:
            skipped.append(f"{name}: {why}")
    if not built:
        built["eager"] = RUNTIMES.cls("eager")(cfg, model=model)
    return built, skipped


@RUNTIMES.register("auto", config=RuntimeConfig)
class AutoRuntime(Runtime):
    """Dispatches each call to the runtime measured fastest for its batch size. ``quantize``: what
    was asked for; ``reason`` says where the quantized runtime runs and where fp32 beat it."""

    def __init__(self, cfg: RuntimeConfig, *, model: nn.Module, quantize: str | None = None) -> None:
        self.quantize = quantize
        built, skipped = fp32_candidates(cfg, model)
        quantized = None
        if quantize is not None:  # raises where it cannot run: asked for, it is no mere candidate
            quantized = f"onnxruntime {quantize}"
            built = {quantized: RUNTIMES.cls("onnxruntime")(cfg, model=model, quantize=quantize), **built}
        device = next(model.parameters()).device
        # Sentence exit is timed at the probes' own shapes: its batches come in few distinct
        # shapes (length-sorted rows), so oneDNN's per-shape primitives are mostly warm. Timed at
        # fresh shapes (token exit's rule) auto picked onnxruntime for batches here, yet
        # `uer predict` on the 3,733 test tweets in batches of 32 took 11.8 s on fused against
        # 16.8 s on onnxruntime (Intel Xeon, AMX, 2 cores, 2026-12-07).
        self.choice: Choice[Runtime] = choose(built, _steps, model.embedding.word.num_embeddings, device,
                                              model.embedding.max_seq_length, note="; ".join(skipped), fresh_shapes=False)
        if quantized is not None and self.choice.timings:
            self.choice.reason += f"; {quantized_note(self.choice, quantized)}"
        if self.choice.small is self.choice.large:
            self.choice.reason += f"; {self.choice.small.reason}"
        elif quantized is not None:
            self.choice.reason += f"; {built[quantized].reason}"
        self.small, self.large = self.choice.small, self.choice.large
        self.layers_num = self.small.layers_num
        self.name, self.reason, self.timings = self.choice.name, self.choice.reason, self.choice.timings

    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return self.choice.for_batch(src.shape[0]).begin(src, seg)

    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.choice.for_batch(src.shape[0]).full_logits(src, seg)
