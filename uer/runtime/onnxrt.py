"""The ``onnxruntime`` runtime: every exit step is one ONNX Runtime session.

The graphs come from :mod:`uer.runtime.onnx_graph` (layer + branch per step, embedding in step 0;
each self-attention one ``com.microsoft`` ``Attention`` node, ``QAttention`` in int8; ONNX
Runtime's own graph optimisations fuse the rest at load), merged into one model whose ``step``
input picks the graph to run (:func:`merge_steps`), so that one session and one thread pool of
``torch.get_num_threads()`` threads serve every step. Nothing process-wide is set: the user's own
ONNX Runtime sessions are unaffected. The arrays between steps stay numpy (ONNX Runtime reads
numpy inputs without a copy).

``quantize="int8"``: ONNX Runtime's dynamic quantization (int8 weights, activations quantized
per call) of every MatMul with a constant weight, branches included, by the scheme chosen for this
CPU (:mod:`uer.runtime.cpu`: 7-bit per-channel weights where the int8 kernels would saturate).
CPU only. A model on CUDA runs fp32 graphs on ONNX Runtime's CUDA provider where the installed
onnxruntime has it (:func:`uer.runtime.support.ort_providers`; the arrays between steps still pass
through the host).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uer.encoders.base import real_length
from uer.runtime.base import RUNTIMES, Flow, Runtime, RuntimeConfig, cut_to_width
from uer.runtime.cpu import Int8Scheme, cpu_features, this_cpu_scheme
from uer.runtime.onnx_graph import build_graphs
from uer.runtime.support import onnxruntime_missing as available  # noqa: F401  (uer.runtime.export's name)
from uer.runtime.support import ort_providers, unsupported

def session_options(threads: int):
    """Intra-op threads as torch uses, all graph optimisations, no process-wide state."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    return so


def quantize_int8(models: list, scheme: Int8Scheme | None = None) -> list[bytes]:
    """ONNX Runtime's dynamic int8 quantization of each graph by ``scheme`` (None: the one for this
    CPU, :func:`uer.runtime.cpu.this_cpu_scheme`), through files (its API takes paths): the
    serialized int8 models."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    options = (scheme or this_cpu_scheme()).quantize_dynamic_options()
    out = []
    with tempfile.TemporaryDirectory(prefix="uer-int8-") as tmp:
        for k, model in enumerate(models):
            src, dst = Path(tmp) / f"{k}.onnx", Path(tmp) / f"{k}.int8.onnx"
            onnx.save(model, src)
            quantize_dynamic(src, dst, **options)
            out.append(dst.read_bytes())
    return out


OUTER = ("src", "seg", "hidden")  # the inputs every step may read
FULL = -1  # the ``step`` input that selects the full model


def merge_steps(models: list) -> object:
    """One model whose ``step`` input picks which step graph runs (``FULL``: the full model's).

    One session instead of one per step, hence one intra-op thread pool: with a pool per session,
    the pool of the step just run spins while the next step's pool works, and on 2 cores the
    steps ran 1.6-3x slower. The choice is a chain of ``If`` nodes on ``step``; each branch holds
    one step's graph and its own weights (ONNX Runtime pre-packs only a graph's own initializers:
    weights left in the outer graph ran 1.5x slower), reading ``src``, ``seg`` and ``hidden`` from
    the outer graph. The chain is written in place, so each weight is copied once. Every input must
    be fed (an unused one may be any array of its dtype)."""
    from onnx import AttributeProto, TensorProto, helper

    def fill(target, model, k: int, out_names: list[str] | None = None) -> None:
        """Step ``k``'s graph into ``target`` (a GraphProto inside the chain); ``out_names``: the names
        its outputs take (``target`` then already lists them)."""
        g = model.graph
        given = dict(zip((o.name for o in g.output), out_names or ()))
        rename = lambda n: given.get(n) or (n if (n in OUTER or not n) else f"s{k}/{n}")
        target.name = f"step{k}"
        for node in g.node:
            new = target.node.add()
            new.CopyFrom(node)
            new.input[:] = [rename(n) for n in node.input]
            new.output[:] = [rename(n) for n in node.output]
        for init in g.initializer:
            new = target.initializer.add()
            new.CopyFrom(init)
            new.name = rename(init.name)
        for o in g.output if out_names is None else ():
            target.output.append(helper.make_tensor_value_info(rename(o.name), o.type.tensor_type.elem_type, None))

    order = list(range(len(models) - 1)) + [FULL]  # the last model is the full one
    hidden_size = models[0].graph.output[0].type.tensor_type.shape.dim[2].dim_value
    inputs = [helper.make_tensor_value_info("src", TensorProto.INT64, ["batch", "length"]),
              helper.make_tensor_value_info("seg", TensorProto.INT64, ["batch", "length"]),
              helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["hb", "hl", hidden_size]),
              helper.make_tensor_value_info("step", TensorProto.INT64, [])]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("hidden_out", "logits")]
    graph = helper.make_graph([], "fastbert_steps", inputs, outs)
    current, names = graph, ["hidden_out", "logits"]
    for pos, k in enumerate(order):
        index = k if k != FULL else len(models) - 1
        if pos == len(order) - 1:  # the chain's end: the last graph itself, under the names asked for
            fill(current, models[index], index, out_names=names)
            break
        current.initializer.append(helper.make_tensor(f"const_{pos}", TensorProto.INT64, [], [k]))
        current.node.append(helper.make_node("Equal", ["step", f"const_{pos}"], [f"is_{pos}"]))
        node = current.node.add()
        node.op_type, node.name = "If", f"choose_{pos}"
        node.input.append(f"is_{pos}")
        node.output.extend(names)
        then_attr, else_attr = node.attribute.add(), node.attribute.add()
        then_attr.name, then_attr.type = "then_branch", AttributeProto.GRAPH
        else_attr.name, else_attr.type = "else_branch", AttributeProto.GRAPH
        fill(then_attr.g, models[index], index)
        else_attr.g.name = f"rest_{pos}"
        names = [f"h_{pos}", f"l_{pos}"]
        else_attr.g.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
        current = else_attr.g
    opsets = {}
    for m in models:
        for o in m.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()], producer_name="uer")
    merged.ir_version = max(m.ir_version for m in models)
    return merged


class OrtFlow(Flow):
    def __init__(self, rt: "OrtRuntime", src: torch.Tensor, seg: torch.Tensor) -> None:
        self.rt = rt
        src, seg = cut_to_width(src, seg)
        self.src = np.ascontiguousarray(src.numpy(), dtype=np.int64)
        self.seg_np = np.ascontiguousarray(seg.numpy(), dtype=np.int64)
        self.hidden = rt.no_hidden

    @property
    def seg(self) -> torch.Tensor:
        return torch.from_numpy(self.seg_np)

    def run(self, step: int) -> torch.Tensor:
        self.hidden, logits = self.rt.session.run(None, {
            "src": self.src, "seg": self.seg_np, "hidden": self.hidden, "step": self.rt.step_ids[step]})
        return torch.from_numpy(logits)

    def step(self, i: int, branch: bool = True) -> torch.Tensor | None:
        logits = self.run(i)
        if i == 0:
            self.src = self.seg_np  # read only by step 0; any int64 array of the batch's shape from here
        return logits if branch else None

    def keep(self, index: torch.Tensor) -> None:
        idx = index.numpy()
        seg = self.seg_np[idx]
        width = real_length(torch.from_numpy(seg))  # the longest samples left: drop padding columns
        self.seg_np = np.ascontiguousarray(seg[:, :width])
        self.src = self.seg_np
        self.hidden = np.ascontiguousarray(self.hidden[idx, :width])


@RUNTIMES.register("onnxruntime", config=RuntimeConfig)
class OrtRuntime(Runtime):
    """One ONNX Runtime session holding every exit step and the full model (:func:`merge_steps`)."""

    name = "onnxruntime"

    def __init__(self, cfg: RuntimeConfig, *, model: nn.Module, quantize: str | None = None) -> None:
        why = unsupported(model, "onnxruntime", quantize)
        if why is None:
            import onnxruntime as ort

            providers, where = ort_providers(ort.get_available_providers(), next(model.parameters()).device, quantize)
            why = where if providers is None else None
        if why is not None:
            raise ValueError(f"runtime 'onnxruntime': {why}")
        import onnx

        graphs = build_graphs(model, fused_attention=True)  # int8: QAttention (uer.runtime.cpu)
        self.layers_num = len(graphs.steps)
        self.quantize = quantize
        models = graphs.steps + [graphs.full]
        self.scheme: Int8Scheme | None = None
        if quantize == "int8":
            self.scheme = this_cpu_scheme()
            models = [onnx.load_from_string(b) for b in quantize_int8(models, self.scheme)]
        threads = torch.get_num_threads()
        self.session = ort.InferenceSession(merge_steps(models).SerializeToString(), session_options(threads),
                                            providers=providers)
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in self.session.get_providers():  # ONNX Runtime falls back to the CPU with a log line only
            raise ValueError(f"runtime 'onnxruntime': {wanted} did not load (the session has "
                             f"{', '.join(self.session.get_providers())}); is the CUDA/cuDNN that onnxruntime-gpu needs installed?")
        self.step_ids = {i: np.array(i, dtype=np.int64) for i in [*range(self.layers_num), FULL]}
        self.no_hidden = np.zeros((1, 1, graphs.hidden_size), dtype=np.float32)  # step 0 reads src instead
        precision = "fp32" if self.scheme is None else (
            f"int8 dynamic ({self.scheme.describe()}: {self.scheme.reason}; CPU {cpu_features().summary()})")
        self.reason = f"ONNX Runtime {ort.__version__}, {precision}, {where}, {threads} threads, one session for every step"

    @torch.inference_mode()
    def begin(self, src: torch.Tensor, seg: torch.Tensor) -> Flow:
        return OrtFlow(self, src.cpu(), seg.cpu())

    @torch.inference_mode()
    def full_logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return OrtFlow(self, src.cpu(), seg.cpu()).run(FULL)
