"""Runtimes for FastBERT's exit steps, chosen by measurement (``auto``) or by name.

    from uer.runtime import make_runtime, runtime_names
    runtime = make_runtime(model, "auto")              # or "fused", "onnxruntime", "eager"
    runtime.name, runtime.reason                       # what runs, and why (auto: the timings)
    runtime = make_runtime(model, "auto", quantize="int8")

* ``eager``: the model's own modules, the reference.
* ``fused``: ``uer.fused``'s unpadded oneDNN linears + :class:`~uer.targets.fastbert.FrozenBranch`.
* ``onnxruntime``: one ONNX Runtime session per step (``uer.runtime.onnx_graph``), one thread
  pool shared by all of them; int8 weights by ONNX Runtime's dynamic quantization.
* ``auto``: times the candidates on this machine when the model loads, for one short text and for
  a batch, and runs each call on the winner for its batch size.

Adding a runtime: one file that registers a :class:`~uer.runtime.base.Runtime` on
:data:`RUNTIMES`, plus its import here.
"""
from __future__ import annotations

from torch import nn

from uer.runtime.base import QUANTIZE, RUNTIMES, Flow, Runtime, RuntimeConfig
from uer.runtime import torch_steps, onnxrt, auto  # noqa: F401  (registrations)

DEFAULT = "auto"


def runtime_names() -> list[str]:
    return RUNTIMES.names()


def make_runtime(model: nn.Module, name: str = DEFAULT, quantize: str | None = None) -> Runtime:
    """The runtime ``name`` for a trained FastBERT ``model`` (put in eval mode)."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if name not in RUNTIMES.names():
        raise ValueError(f"unknown runtime {name!r}; valid: {', '.join(RUNTIMES.names())}")
    return RUNTIMES.cls(name)(RuntimeConfig(), model=model.eval(), quantize=quantize)


__all__ = ["DEFAULT", "Flow", "RUNTIMES", "Runtime", "make_runtime", "runtime_names"]
