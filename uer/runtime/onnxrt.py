"""The ``onnxruntime`` runtime: every exit step is one ONNX Runtime session.

The graphs come from :mod:`uer.runtime.onnx_graph` (layer + branch per step, embedding in step 0;
ONNX Runtime's own graph optimisations fuse them at load). All sessions share one intra-op thread
pool of ``torch.get_num_threads()`` threads: a pool per session would leave one set of spinning
threads per step fighting for the same cores (measured: 3x slower at batch 1 on 2 cores).
The arrays between steps stay numpy (ONNX Runtime reads numpy inputs without a copy).

``quantize="int8"``: ONNX Runtime's dynamic quantization (int8 weights, activations quantized
per call) of every MatMul with a constant weight, branches included. CPU only.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig
from uer.runtime.onnx_graph import build_graphs, unsupported

_POOL: dict[str, int | bool] = {}  # the process's ONNX Runtime thread pool, set once


def available() -> str | None:
    """None when onnxruntime can be imported, else why not."""
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install onnxruntime onnx)"
    return None


def session_options():
    """Options for a session on the shared thread pool (set up on first use)."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    if "threads" not in _POOL:
        threads = torch.get_num_threads()
        try:
            C.set_global_thread_pool_sizes(threads, 1)
            _POOL["threads"], _POOL["shared"] = threads, True
        except Exception:  # the process made an ONNX Runtime environment before us: per-session pools
            _POOL["threads"], _POOL["shared"] = threads, False
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if _POOL["shared"]:
        so.use_per_session_threads = False
    else:
        so.intra_op_num_threads = int(_POOL["threads"])
    return so


def quantize_int8(models: list) -> list[bytes]:
    """ONNX Runtime's dynamic int8 quantization of each graph (through files: its API takes paths)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = []
    with tempfile.TemporaryDirectory(prefix="uer-int8-") as tmp:
        for k, model in enumerate(models):
            src, dst = Path(tmp) / f"{k}.onnx", Path(tmp) / f"{k}.int8.onnx"
            onnx.save(model, src)
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            out.append(dst.read_bytes())
    return out


class OrtFlow(Flow):
    def __init__(self, rt: "OrtRuntime", src: torch.Tensor, seg: torch.Tensor) -> None:
        self.rt = rt
        width = int(np.flatnonzero((seg > 0).any(0).numpy())[-1]) + 1 if bool((seg > 0).any()) else 1
        self.src = np.ascontiguousarray(src[:, :width].numpy(), dtype=np.int64)
        self.seg_np = np.ascontiguousarray(seg[:, :width].numpy(), dtype=np.int64)
        self.hidden: np.ndarray | None = None

    @property
    def seg(self) -> torch.Tensor:
        return torch.from_numpy(self.seg_np)

    def step(self, i: int, branch: bool = True) -> torch.Tensor | None:
        feeds = {"src": self.src, "seg": self.seg_np} if i == 0 else {"hidden": self.hidden, "seg": self.seg_np}
        self.hidden, logits = self.rt.sessions[i].run(None, feeds)
        return torch.from_numpy(logits) if branch else None

    def keep(self, index: torch.Tensor) -> None:
        idx = index.numpy()
        seg = self.seg_np[idx]
        real = (seg > 0).any(0)
        width = int(np.flatnonzero(real)[-1]) + 1 if real.any() else 1
        self.seg_np = np.ascontiguousarray(seg[:, :width])
        self.hidden = np.ascontiguousarray(self.hidden[idx, :width])


@RUNTIMES.register("onnxruntime", config=RuntimeConfig)
class OrtRuntime(Runtime):
    """One ONNX Runtime session per exit step, plus one for the full model (teacher only)."""

    name = "onnxruntime"

    def __init__(self, cfg: RuntimeConfig, *, model: nn.Module, quantize: str | None = None) -> None:
        why = available() or unsupported(model)
        if why is None and next(model.parameters()).device.type != "cpu":
            why = f"the model is on {next(model.parameters()).device}; this runtime runs on the CPU"
        if why is not None:
            raise ValueError(f"runtime 'onnxruntime': {why}")
        import onnxruntime as ort

        graphs = build_graphs(model)
        self.layers_num = len(graphs.steps)
        self.quantize = quantize
        models = graphs.steps + [graphs.full]
        blobs = quantize_int8(models) if quantize == "int8" else [m.SerializeToString() for m in models]
        so = session_options()
        sessions = [ort.InferenceSession(b, so, providers=["CPUExecutionProvider"]) for b in blobs]
        self.sessions, self.full = sessions[:-1], sessions[-1]
        pool = f"{_POOL['threads']} threads, shared pool" if _POOL["shared"] else f"{_POOL['threads']} threads per session"
        self.reason = f"ONNX Runtime {ort.__version__}, {'int8 dynamic' if quantize else 'fp32'}, {pool}"

    @torch.inference_mode()
    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return OrtFlow(self, src.cpu(), seg.cpu())

    @torch.inference_mode()
    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        flow = OrtFlow(self, src.cpu(), seg.cpu())
        (logits,) = self.full.run(None, {"src": flow.src, "seg": flow.seg_np})
        return torch.from_numpy(logits)
