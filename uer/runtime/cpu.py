"""The CPU this process runs on, read once, and the int8 scheme chosen from its features.

ONNX Runtime's dynamic quantization (the ``int8`` of :mod:`uer.runtime.onnxrt` and of ``python -m
uer export --quantize int8``) quantizes activations to uint8 per call and weights to int8 ahead of
time, so every quantized MatMul is a u8 x s8 product. How exact that product is depends on the CPU:

* x86 with VNNI (``avx512_vnni``, ``avx_vnni``) or AMX (``amx_int8``): ``VPDPBUSD`` / the AMX tiles
  add u8 x s8 products into int32 with no intermediate clamping, so full 8-bit weights are exact
  integer arithmetic.
* x86 without VNNI (AVX2, AVX-512 without VNNI, SSE4.1): ONNX Runtime's u8 x s8 kernels use
  ``VPMADDUBSW``, which adds two products into an int16 and clamps it. Two 8-bit products reach
  2 x 255 x 127 = 64,770 against the int16 limit of 32,767: the pair saturates and the result is
  wrong by up to half its size (the AVX2-only EPYC of issue 23 lost 1.6 points at the chosen
  speed). ONNX Runtime's quantization guide ("When and why do I need to try U8U8?") names this
  and recommends ``reduce_range`` (or U8U8 weights); ``quantize_dynamic``'s own docstring says
  reduce_range "may improve the accuracy ... on non-VNNI machine, especially for per-channel
  mode". We take it: ``reduce_range`` writes 7-bit weights in [-64, 64], so a pair is at most
  2 x 255 x 64 = 32,640 and never saturates. U8U8 would keep 8 bits but runs ``VPMADDWD`` on
  widened 16-bit values, the slow kernel, where the point of int8 is speed.
* ARM64: ONNX Runtime's guide states no such issue (x64 with VNNI and ARM): full 8-bit weights.
* Anything else, or a CPU whose features cannot be read: the scheme that is exact on every CPU
  (:data:`PORTABLE`).

Weights are quantized per channel (one scale per output column) on every CPU: one scale per
matrix spends the 8 bits on the few largest weights. Measured on the main job's MiniLM tweets
model on an AMX Xeon (no saturation there, so this is the schemes' own precision; 3,733 test
rows, fp32 teacher 0.7442): per-tensor 8-bit weights scored 0.7361 at full depth and 0.7276 at
speed 0.8 (1.7 points under the fp32 teacher: outside the 1-point rule); per-channel 8-bit
0.7404 / 0.7372; per-channel 7-bit 0.7431 / 0.7385; per-tensor 7-bit 0.7260 / 0.7032.

Only MatMuls with a constant weight and the fused ``Attention`` nodes of the in-process graphs
(``QAttention``: the same per-channel weights, one kernel) are quantized (``op_types = ("MatMul",
"Attention")``): an embedding lookup (``Gather``, which ONNX Runtime would quantize by default)
saves no arithmetic and only adds error at the input of every layer. QAttention against the
MatMuls of the unfused attention, main job's model, this Xeon: 2.12 against 3.28 ms at 1 x 24,
42.5 against 50.9 ms at 32 x 32, the same largest logit error.

An int8 *export* is made on one machine and may be run on another: its manifest records the
scheme and the CPU it was chosen for. Files made with full 8-bit weights (on a VNNI, AMX or ARM
machine) saturate on an AVX2-only CPU; files made with :data:`PORTABLE` run exactly everywhere.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

CPUINFO = Path("/proc/cpuinfo")
# the features that decide the int8 scheme or explain a timing, as /proc/cpuinfo spells them
X86_FEATURES = ("sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "amx_int8", "amx_bf16", "avx512_fp16")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")
VNNI = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 products accumulated in int32: no saturation
X86 = ("x86_64", "amd64", "i686", "i386")
ARM64 = ("aarch64", "arm64")
INT16_MAX = 32767
# torch's own dispatch level, the fallback where /proc/cpuinfo is absent (it cannot tell VNNI)
TORCH_CAPABILITY = {"AVX512": ("avx2", "fma", "avx512f", "avx512bw"), "AVX2": ("avx2", "fma")}


@dataclass(frozen=True)
class CpuFeatures:
    """What the int8 scheme is chosen from: the architecture, the relevant feature flags, where
    they were read (``/proc/cpuinfo``, torch's capability, or nothing) and the model name."""

    arch: str  # platform.machine(), lower case: x86_64, aarch64, ...
    flags: frozenset[str]
    source: str
    model: str = ""

    def summary(self) -> str:
        """One line, e.g. ``Intel(R) Xeon(R) Processor, x86_64: avx2 fma avx512f ... (/proc/cpuinfo)``."""
        known = X86_FEATURES if self.arch in X86 else ARM_FEATURES
        shown = " ".join(f for f in known if f in self.flags) or "none of the int8-relevant features"
        return f"{self.model or 'unknown model'}, {self.arch}: {shown} ({self.source})"


def parse_cpuinfo(text: str, arch: str) -> CpuFeatures:
    """The features of the first processor listed in a ``/proc/cpuinfo`` text (x86 ``flags``,
    ARM ``Features``)."""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    return CpuFeatures(arch, frozenset(flags), str(CPUINFO), model)


def torch_features(arch: str, capability: str) -> CpuFeatures:
    """What torch's dispatch level (``torch.backends.cpu.get_cpu_capability()``) tells: the vector
    width, never VNNI."""
    flags = TORCH_CAPABILITY.get(capability, ())
    return CpuFeatures(arch, frozenset(flags), f"torch.backends.cpu.get_cpu_capability() = {capability!r}",
                       platform.processor())


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's features, read once: ``/proc/cpuinfo`` where it lists them, else torch's
    capability, else none (the scheme is then :data:`PORTABLE`)."""
    arch = platform.machine().lower()
    try:
        found = parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"), arch)
    except OSError:  # not Linux
        found = None
    if found is not None and found.flags:
        return found
    try:
        import torch

        return torch_features(arch, torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError, RuntimeError):
        return CpuFeatures(arch, frozenset(), "no feature source", platform.processor())


@dataclass(frozen=True)
class Int8Scheme:
    """How ``onnxruntime.quantization.quantize_dynamic`` quantizes: the weights' type (activations
    are always uint8 in dynamic mode), 7-bit weights or not, one scale per output column or per
    tensor, the operator types quantized, and why."""

    reduce_range: bool
    per_channel: bool
    reason: str
    weight_type: str = "QInt8"  # onnxruntime.quantization.QuantType's name
    op_types: tuple[str, ...] = ("MatMul", "Attention")

    @property
    def weight_levels(self) -> tuple[int, int]:
        """The integers the weights take (ONNX Runtime's symmetric int8: [-127, 127]; reduced: [-64, 64])."""
        return (-64, 64) if self.reduce_range else (-127, 127)

    @property
    def largest_pair(self) -> int:
        """The largest sum of two u8 x s8 products (what ``VPMADDUBSW`` holds in an int16)."""
        return 2 * 255 * max(-self.weight_levels[0], self.weight_levels[1])

    @property
    def exact_everywhere(self) -> bool:
        """True when no CPU's int8 kernel can saturate: every pair fits an int16."""
        return self.largest_pair <= INT16_MAX

    def describe(self) -> str:
        """e.g. ``int8 weights in [-64, 64] (reduce_range), per-channel, MatMul/Attention only``."""
        bits = "reduce_range" if self.reduce_range else "full range"
        lo, hi = self.weight_levels
        return (f"int8 weights in [{lo}, {hi}] ({bits}), {'per-channel' if self.per_channel else 'per-tensor'}, "
                f"{'/'.join(self.op_types)} only")

    def as_dict(self) -> dict[str, Any]:
        """For a report or a manifest: the fields, the weight levels and whether it is exact everywhere."""
        return {**asdict(self), "op_types": list(self.op_types), "weight_levels": list(self.weight_levels),
                "exact_on_every_cpu": self.exact_everywhere}

    def quantize_dynamic_options(self) -> dict[str, Any]:
        """The keyword arguments of ``onnxruntime.quantization.quantize_dynamic`` that apply it."""
        from onnxruntime.quantization import QuantType

        import onnx

        return {"weight_type": QuantType[self.weight_type], "reduce_range": self.reduce_range,
                "per_channel": self.per_channel, "op_types_to_quantize": list(self.op_types),
                # ONNX's shape inference cannot type the com.microsoft Attention node's inputs
                "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}}


PORTABLE = Int8Scheme(reduce_range=True, per_channel=True, reason=(
    "7-bit weights (reduce_range) with per-channel scales: no u8 x s8 pair can saturate an int16 "
    f"(2 x 255 x 64 = {2 * 255 * 64} <= {INT16_MAX}), so the int8 products are exact on every CPU"))


def _has(flags: Iterable[str], names: Iterable[str]) -> list[str]:
    flags = set(flags)
    return [n for n in names if n in flags]


def int8_scheme(features: CpuFeatures) -> Int8Scheme:
    """The dynamic-quantization scheme for a CPU with ``features`` (module docstring): full 8-bit
    weights where the int8 kernels accumulate without saturation (VNNI, AMX, ARM64), else 7-bit
    weights (:data:`PORTABLE`); per-channel scales on every CPU. ``reason`` names the features it read."""
    if features.arch in X86:
        vnni = _has(features.flags, VNNI)
        if vnni:
            return Int8Scheme(reduce_range=False, per_channel=True, reason=(
                f"{'/'.join(vnni)}: int8 products accumulate in int32 without saturation, so full 8-bit "
                "weights are exact; per-channel scales"))
        widest = _has(features.flags, ("avx512bw", "avx2", "sse4_1"))
        what = widest[0] if widest else "no AVX2"
        return Int8Scheme(reduce_range=True, per_channel=True, reason=(
            f"{what} without VNNI: ONNX Runtime's u8 x s8 kernels use VPMADDUBSW, whose int16 pair sums "
            f"saturate with 8-bit weights (2 x 255 x 127 > {INT16_MAX}); 7-bit weights (reduce_range) keep every "
            f"pair within int16 (2 x 255 x 64 = {2 * 255 * 64}); per-channel scales"))
    if features.arch in ARM64:
        return Int8Scheme(reduce_range=False, per_channel=True, reason=(
            f"{features.arch}: ONNX Runtime's quantization guide states no saturation on ARM, so full 8-bit "
            "weights are exact; per-channel scales"))
    return Int8Scheme(reduce_range=True, per_channel=True, reason=(
        f"{features.arch or 'unknown architecture'}: int8 kernels not known here; " + PORTABLE.reason))


def this_cpu_scheme() -> Int8Scheme:
    """The scheme for the CPU this process runs on."""
    return int8_scheme(cpu_features())


__all__ = ["CpuFeatures", "Int8Scheme", "PORTABLE", "cpu_features", "int8_scheme", "parse_cpuinfo",
           "this_cpu_scheme", "torch_features"]
