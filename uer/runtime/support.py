"""Which runtime can run which model: one list of names per kind of exit, one ``unsupported``.

Both kinds of early exit share the names (``uer.runtime``'s docstring says what each runs):

* ``sentence`` (FastBERT, ``uer.fastbert.inference.EarlyExit``): ``auto``, ``eager``, ``fused``,
  ``onnxruntime``;
* ``token`` (``uer.tagging.inference.TokenExit``): ``auto``, ``eager``, ``fused``.

:func:`unsupported` answers from a :class:`uer.config.Config` alone, so a command can refuse a
runtime before it trains anything, and from a built model (its modules are checked too).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from uer.config import Config
from uer.embeddings.position import PositionEmbedding
from uer.embeddings.segment import SegmentEmbedding
from uer.embeddings.word import WordEmbedding
from uer.fused import unsupported as fused_unsupported
from uer.fused import unsupported_config as fused_unsupported_config
from uer.targets.fastbert import Branch, fastbert_target

KINDS = ("sentence", "token")
NAMES: dict[str, tuple[str, ...]] = {
    "sentence": ("auto", "eager", "fused", "onnxruntime"),
    "token": ("auto", "eager", "fused"),
}
QUANTIZE = (None, "int8")
ONNX_ACTIVATIONS = ("gelu", "gelu_fast", "relu", "silu")
ONNX_EMBEDDINGS = ("word", "pos", "seg")
ONNX_POOLINGS = ("first", "mean", "max")
EMBEDDING_PARTS = {"word": WordEmbedding, "pos": PositionEmbedding, "seg": SegmentEmbedding}


def runtime_names(kind: str = "sentence") -> tuple[str, ...]:
    """The runtimes of ``kind`` (``sentence`` or ``token``): the ``--runtime`` choices."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of exit {kind!r}; valid: {', '.join(KINDS)}")
    return NAMES[kind]


def check_names(runtime: str, quantize: str | None, kind: str) -> None:
    """ValueError for a runtime or a quantisation that does not exist (not: that cannot run here)."""
    names = runtime_names(kind)
    if runtime not in names:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(names)}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")


def unsupported(subject: Config | nn.Module, runtime: str, quantize: str | None = None, *,
                kind: str = "sentence") -> str | None:
    """Why ``runtime`` (with ``quantize``) cannot run the model, or None when it can.

    ``subject``: a :class:`uer.config.Config` (before training: the config alone decides) or a
    built model (its modules are checked as well). ``auto`` and ``eager`` run everything in fp32.
    Unknown names raise ValueError.

    Example::

        why = unsupported(load_config("models/bert/tiny_alibi.yaml"), "onnxruntime")
        # "position_bias 'alibi' is not exported"
    """
    check_names(runtime, quantize, kind)
    model = subject if isinstance(subject, nn.Module) else None
    config: Config = model.config if model is not None else subject
    if quantize is not None:
        if kind == "token":
            return "token exit runs fp32 only (int8 runs on the onnxruntime runtime of sentence exit)"
        if runtime not in ("auto", "onnxruntime"):
            return f"runtime {runtime!r} runs fp32 only; int8 runs on the onnxruntime runtime (runtime 'auto' or 'onnxruntime')"
        return unsupported(subject, "onnxruntime", kind=kind)
    if runtime in ("auto", "eager"):
        return None
    if runtime == "fused":
        return _fused(config, model, kind)
    return onnx_unsupported(config, model) or onnxruntime_missing()


def _fused(config: Config, model: nn.Module | None, kind: str) -> str | None:
    if config.encoder.name != "transformer":
        return f"encoder {config.encoder.name!r} has no fused path"
    why = fused_unsupported_config(config.encoder.cfg) if model is None else fused_unsupported(model.encoder)
    if why is None and kind == "token" and config.encoder.cfg.mask != "fully_visible":
        why = f"mask {config.encoder.cfg.mask!r}: tokens exit only under fully_visible attention"
    return why


def onnx_unsupported(config: Config, model: nn.Module | None = None) -> str | None:
    """Why the ONNX graphs (``uer.runtime.onnx_graph``) cannot express the model exactly, or None."""
    if config.subencoder is not None:
        return "a subencoder is not exported"
    why = _fused(config, model, "sentence")  # the same whitelist of transformer options
    if why is not None:
        return why
    cfg = config.encoder.cfg
    if cfg.mask != "fully_visible":
        return f"mask {cfg.mask!r} is not exported (fully_visible only)"
    if cfg.position_bias != "none":
        return f"position_bias {cfg.position_bias!r} is not exported"
    if cfg.act not in ONNX_ACTIVATIONS:
        return f"activation {cfg.act!r} is not exported"
    for spec in config.embedding.components:
        if spec.name not in ONNX_EMBEDDINGS:
            return f"embedding component {spec.name!r} is not exported"
    if config.embedding.layernorm == "none":
        return "embedding layernorm 'none' is not exported"
    for spec in config.target.components:
        if spec.name == "fastbert" and spec.cfg.pooling not in ONNX_POOLINGS:
            return f"branch pooling {spec.cfg.pooling!r} is not exported"
    return None if model is None else unexported_modules(model)


def unexported_modules(model: nn.Module, target_of=fastbert_target, branch_type: type = Branch) -> str | None:
    """What the config does not say: modules of other types than the ones the ONNX writers write.
    ``target_of`` finds the exit target (sentence exit by default; the tagger's export passes its
    own), whose branches must all be exactly ``branch_type``."""
    why = unexported_embedding(model)
    if why is not None:
        return why
    try:
        target = target_of(model)
    except ValueError as e:
        return str(e)
    for b in target.branches:
        if type(b) is not branch_type:
            return f"branch {type(b).__name__} is not exported"
    return None


def unexported_embedding(model: nn.Module) -> str | None:
    """Embedding modules of other types than the ones ``uer.runtime.onnx_graph`` writes (both exports)."""
    emb = model.embedding
    for name, part in emb.components.items():
        if type(part) is not EMBEDDING_PARTS.get(name):
            return f"embedding component {name!r} ({type(part).__name__}) is not exported"
    if not isinstance(emb.layer_norm, (nn.LayerNorm, nn.RMSNorm)):
        return f"embedding norm {type(emb.layer_norm).__name__} is not exported"
    if not isinstance(emb.projection, (nn.Identity, nn.Linear)):
        return f"embedding projection {type(emb.projection).__name__} is not exported"
    return None


CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"
Provider = str | tuple[str, dict[str, Any]]  # a name, or (name, options) as onnxruntime.InferenceSession takes


def ort_providers(available: Sequence[str], device: str | torch.device, quantize: str | None = None
                  ) -> tuple[list[Provider] | None, str]:
    """The ONNX Runtime execution providers that run a model on ``device``, from the providers
    onnxruntime offers (``onnxruntime.get_available_providers()``): ``(providers, reason)``, or
    ``(None, why not)``.

    CPU: the CPU provider. CUDA: the CUDA provider on the model's GPU, fp32 graphs (the CPU provider
    behind it takes the few operators CUDA lacks, as ONNX Runtime's partitioner does), where the
    installed onnxruntime has it (``onnxruntime-gpu``); int8 stays on the CPU (dynamic
    quantization's integer operators are CPU kernels; ONNX Runtime's GPU int8 is S8S8 through
    TensorRT). Pure: tests give it invented provider lists.

    Example::

        ort_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:1")
        # ([("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], "CUDAExecutionProvider on cuda:1, fp32 graphs")
    """
    device = torch.device(device)
    if device.type == "cpu":
        if CPU_PROVIDER not in available:
            return None, f"onnxruntime offers no {CPU_PROVIDER} (available: {', '.join(available) or 'none'})"
        return [CPU_PROVIDER], CPU_PROVIDER
    if device.type != "cuda":
        return None, f"the model is on {device}; ONNX Runtime runs here on the CPU or on CUDA"
    if quantize is not None:
        return None, f"the model is on {device}; {quantize} (ONNX Runtime's dynamic quantization) runs on the CPU only"
    if CUDA_PROVIDER not in available:
        return None, (f"the model is on {device} and this onnxruntime has no {CUDA_PROVIDER} "
                      f"(available: {', '.join(available) or 'none'}; pip install onnxruntime-gpu)")
    index = device.index if device.index is not None else 0
    return [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER], f"{CUDA_PROVIDER} on cuda:{index}, fp32 graphs"


def onnxruntime_missing() -> str | None:
    """None when onnxruntime and onnx can be imported, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install onnxruntime onnx)"
    return None


__all__ = ["CPU_PROVIDER", "CUDA_PROVIDER", "KINDS", "NAMES", "QUANTIZE", "check_names", "onnx_unsupported", "onnxruntime_missing",
           "ort_providers", "runtime_names", "unsupported"]
