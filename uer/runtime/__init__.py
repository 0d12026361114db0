"""Inference runtimes for early exit, chosen by measurement (``auto``) or by name.

One concept for both kinds of exit; :func:`runtime_names` lists each kind's names and
:func:`unsupported` says, from a config before training or from a built model, why one cannot run::

    from uer.runtime import make_runtime, runtime_names, unsupported
    runtime_names("sentence"), runtime_names("token")  # the --runtime choices of each kind
    unsupported(config, "onnxruntime", quantize="int8")  # None, or the reason (str)
    runtime = make_runtime(model, "auto")              # sentence exit: or "fused", "onnxruntime", "eager"
    runtime.name, runtime.reason                       # what runs, and why (auto: the timings)

* ``eager``: the model's own weights, unpacked: its modules (sentence exit) or ``F.linear`` on the
  tokens still in (token exit). The reference.
* ``fused``: ``uer.fused``'s executor: the layers on packed real tokens, linears oneDNN-packed with
  their bias, activation and residual fused in (``F.linear`` where oneDNN cannot run); sentence
  exit adds :class:`~uer.targets.fastbert.FrozenBranch`. Refused (with the reason) where
  ``uer.fused`` does not cover the encoder, and for token exit under a masked (causal) attention.
* ``onnxruntime`` (sentence exit): one ONNX Runtime session per model (``uer.runtime.onnx_graph``),
  on the CPU or ONNX Runtime's CUDA provider (``support.ort_providers``); int8 weights by ONNX
  Runtime's dynamic quantization, in the scheme this CPU's int8 kernels need (``uer.runtime.cpu``).
* ``auto``: times the candidates on this machine when the model loads, for one short text and for
  a batch, and runs each call on the winner for its batch size (``uer.runtime.auto``); with
  ``quantize="int8"`` fp32 runs wherever int8 timed slower.

Adding a sentence runtime: one file that registers a :class:`~uer.runtime.base.Runtime` on
:data:`RUNTIMES`, its import here, and its name in ``uer.runtime.support.NAMES``.
"""
from __future__ import annotations

from torch import nn

from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig
from uer.runtime.support import QUANTIZE, check_names, runtime_names, unsupported
from uer.runtime import torch_steps, onnxrt, auto  # noqa: F401  (registrations)

DEFAULT = "auto"


def make_runtime(model: nn.Module, name: str = DEFAULT, quantize: str | None = None) -> Runtime:
    """The sentence-exit runtime ``name`` for a trained FastBERT ``model`` (put in eval mode).

    ValueError with the reason when ``name`` cannot run the model (:func:`unsupported`)."""
    check_names(name, quantize, "sentence")
    why = unsupported(model, name, quantize)
    if why is not None:
        raise ValueError(f"runtime {name!r}: {why}")
    return RUNTIMES.cls(name)(RuntimeConfig(), model=model.eval(), quantize=quantize)


__all__ = ["DEFAULT", "Flow", "QUANTIZE", "RUNTIMES", "Runtime", "make_runtime", "runtime_names", "unsupported"]
