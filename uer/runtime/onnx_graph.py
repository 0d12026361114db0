"""FastBERT as ONNX graphs, one per exit step, written from the layers' own ``compute`` methods.

Step ``i`` is layer ``i`` followed by its branch; step 0 starts from the token ids (the embedding
is in it), the last step ends with the encoder's final norm::

    step_0:  src (B, T) int64, seg (B, T) int64    -> hidden (B, T, H), logits (B, labels)
    step_i:  hidden (B, T, H) float32, seg         -> hidden, logits
    full:    src, seg                              -> hidden (the last layer's), logits of the teacher

Batch and length are dynamic. ``seg`` is UER's segment ids (0 = padding): it gives the attention
mask inside every graph, so a caller feeds the same two arrays the PyTorch model takes.

The graphs are not traced. ``TransformerLayer.compute`` and ``Branch.compute`` are run on an
executor (:class:`GraphWriter`) whose ``linear`` / ``attend`` / ``norm`` calls emit ONNX nodes
instead of computing, so the exported maths is the maths the model trains with, and a layer
feature that this writer does not know fails here instead of exporting something else. Building
the graphs of MiniLM takes milliseconds (no ``torch.onnx`` tracing, no ``onnxscript``).

Standard ONNX operators only (opset 20: ``Gelu``, ``LayerNormalization``), so any ONNX runtime can
run the files; ONNX Runtime fuses them further when it loads them (``SkipLayerNormalization``,
``BiasGelu``), but not the self-attention, whose pattern its loader does not recognise. So the
in-process runtime asks for ``fused_attention=True``: each layer's projection and attention are
one ``com.microsoft`` ``Attention`` node (the operator ONNX Runtime's own BERT optimizer produces),
which only ONNX Runtime runs; the exported files keep the standard operators. What is supported
is checked by :func:`unsupported`; anything else is refused with the reason.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from uer.runtime.support import ONNX_ACTIVATIONS, onnx_unsupported
from uer.targets.fastbert import Branch, fastbert_target

OPSET = 20
NEG = -3.4028234663852886e38  # float32 min: a masked key gets exactly zero weight, as a bool mask does


def unsupported(model: nn.Module) -> str | None:
    """Why the ONNX graphs cannot express ``model`` exactly, or None when they can (the rules are
    ``uer.runtime.support``'s, shared with the runtime's choice)."""
    return onnx_unsupported(model.config, model)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class GraphWriter:
    """Collects nodes and initializers; the executor of ``TransformerLayer.compute`` on symbolic
    tensors (their names): a ``LayerExecutor[str, str]``. :class:`_BranchExecutor` writes branches."""

    def __init__(self, fused_attention: bool = False) -> None:
        from onnx import helper

        self.helper = helper
        self.fused_attention = fused_attention  # qkv + attend -> one com.microsoft Attention node
        self._pending: dict[str, tuple[nn.Linear, str]] = {}  # qkv's name -> (its linear, its input), not yet written
        self.key_mask_name: str | None = None  # (B, T) int32 1 = real token: Attention's mask_index
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self._weights: dict[tuple[int, str], str] = {}
        self._count = 0
        self.mask_name: str | None = None  # (B, 1, 1, T) additive key mask
        self.real_name: str | None = None  # (B, T, 1) float 1 = real token
        self.head_size = 0  # of the layer being written (attend's scale)

    # ------------------------------------------------------------------ plumbing
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, kind: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.initializers[name] = value
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "shape")

    def weight(self, owner: object, key: str, value) -> str:
        """One initializer per tensor, however many times it is used (ALBERT's shared layer)."""
        k = (id(owner), key)
        if k not in self._weights:
            self._weights[k] = self.const(value() if callable(value) else value, key)
        return self._weights[k]

    # ------------------------------------------------------------------ masks from seg
    def masks(self, seg: str) -> None:
        real = self.op("Greater", [seg, self.const(np.asarray(0, dtype=np.int64))], "real")  # (B, T) bool
        self.mask_name = self.op("Where", [self.op("Unsqueeze", [real, self.ints(1, 2)]),
                                           self.const(np.asarray(0.0, np.float32)),
                                           self.const(np.asarray(NEG, np.float32))], "key_mask")
        self.real_name = self.op("Unsqueeze", [self.op("Cast", [real], to=1), self.ints(2)], "real_f")
        if self.fused_attention:
            self.key_mask_name = self.op("Cast", [real], "key_index", to=6)  # int32

    # ------------------------------------------------------------------ executor API (layers)
    def matmul(self, module: nn.Linear, x: str, rows: slice | None = None, scale: float = 1.0) -> str:
        """``x @ W.T + b`` (rows of W and b optionally sliced and scaled)."""
        key = f"{rows.start}:{rows.stop}" if rows else "all"
        w = self.weight(module, f"w{key}{scale}", lambda: _array(module.weight[rows or slice(None)].T * scale))
        y = self.op("MatMul", [x, w])
        if module.bias is not None:
            b = self.weight(module, f"b{key}{scale}", lambda: _array(module.bias[rows or slice(None)] * scale))
            y = self.op("Add", [y, b])
        return y

    def activation(self, act: str, y: str) -> str:
        if act == "gelu":
            return self.op("Gelu", [y])
        if act == "gelu_fast":
            return self.op("Gelu", [y], approximate="tanh")
        if act == "relu":
            return self.op("Relu", [y])
        if act == "silu":
            return self.op("Mul", [y, self.op("Sigmoid", [y])])
        raise ValueError(f"activation {act!r} is not exported (exported: {', '.join(ONNX_ACTIVATIONS)})")

    def linear(self, module: nn.Linear, x: str, act: str | None = None, dropout: nn.Module | None = None,
               residual: str | None = None) -> str:
        y = self.matmul(module, x)
        if act is not None:
            y = self.activation(act, y)
        return y if residual is None else self.op("Add", [residual, y])

    def qkv(self, module: nn.Linear, x: str, norm: nn.Module | None) -> str:
        x = x if norm is None else self.norm(norm, x)
        if not self.fused_attention:
            return self.matmul(module, x)
        name = self.fresh("qkv")  # written by attend, as part of the Attention node
        self._pending[name] = (module, x)
        return name

    def attend(self, qkv: str, heads_num: int, dropout_p: float = 0.0) -> str:
        """(B, T, 3H) -> (B, T, H), the key mask from ``seg``; the 1/sqrt(d) scale is applied to Q."""
        if qkv in self._pending:  # ONNX Runtime's Attention: the same maths, scale 1/sqrt(d) by default
            module, x = self._pending.pop(qkv)
            w = self.weight(module, "wall1.0", lambda: _array(module.weight.T))
            b = self.weight(module, "ball1.0", lambda: _array(module.bias if module.bias is not None
                                                              else torch.zeros(module.out_features)))
            out = self.fresh("attention")
            self.nodes.append(self.helper.make_node("Attention", [x, w, b, self.key_mask_name], [out], domain="com.microsoft",
                                                    num_heads=heads_num))
            return out
        q, k, v = self._heads(qkv, 3, heads_num)  # (B, heads, T, d)
        return self._attention(q, k, v, heads_num, self.head_size, merge_tokens=True)

    def _heads(self, x: str, parts: int, heads_num: int) -> list[str]:
        """(B, T, parts * heads * d) -> parts x (B, heads, T, d)."""
        split = self.op("Reshape", [x, self.ints(0, 0, parts, heads_num, -1)])
        split = self.op("Transpose", [split], perm=[2, 0, 3, 1, 4])
        outs = [self.fresh("part") for _ in range(parts)]
        if parts == 1:
            return [self.op("Squeeze", [split, self.ints(0)])]
        self.nodes.append(self.helper.make_node("Split", [split, self.ints(*([1] * parts))], [o + "_s" for o in outs], axis=0))
        return [self.op("Squeeze", [o + "_s", self.ints(0)]) for o in outs]

    def _attention(self, q: str, k: str, v: str, heads_num: int, head_size: int, merge_tokens: bool) -> str:
        scores = self.op("MatMul", [q, self.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = self.op("Mul", [scores, self.const(np.asarray(1.0 / math.sqrt(head_size), np.float32))])
        weights = self.op("Softmax", [self.op("Add", [scores, self.mask_name])], axis=-1)
        out = self.op("Transpose", [self.op("MatMul", [weights, v])], perm=[0, 2, 1, 3])  # (B, T, heads, d)
        return self.op("Reshape", [out, self.ints(0, 0, -1) if merge_tokens else self.ints(0, -1)])

    def norm(self, module: nn.Module, x: str) -> str:
        if isinstance(module, nn.LayerNorm):
            w = self.weight(module, "gamma", lambda: _array(module.weight))
            b = self.weight(module, "beta", lambda: _array(module.bias))
            return self.op("LayerNormalization", [x, w, b], axis=-1, epsilon=float(module.eps))
        if isinstance(module, nn.RMSNorm):
            eps = module.eps if module.eps is not None else float(np.finfo(np.float32).eps)
            ms = self.op("ReduceMean", [self.op("Mul", [x, x]), self.ints(-1)], keepdims=1)
            inv = self.op("Reciprocal", [self.op("Sqrt", [self.op("Add", [ms, self.const(np.asarray(eps, np.float32))])])])
            y = self.op("Mul", [x, inv])
            return y if module.weight is None else self.op("Mul", [y, self.weight(module, "gamma", lambda: _array(module.weight))])
        if isinstance(module, nn.Identity):
            return x
        raise ValueError(f"norm {type(module).__name__} is not exported")


class _BranchExecutor:
    """Executes ``Branch.compute`` on a :class:`GraphWriter`, folding as ``FrozenBranch`` does:
    a ``BranchExecutor[str]``."""

    def __init__(self, g: GraphWriter, branch: Branch) -> None:
        self.g, self.branch = g, branch

    def linear_in(self, module: nn.Linear, x: str, dropout: nn.Module | None = None) -> str:
        return self.g.matmul(module, x)

    def linear_pair(self, first: nn.Linear, second: nn.Linear, x: str, dropout: nn.Module) -> str:  # one linear at inference
        g = self.g
        w = g.weight(self.branch, "fold_w", lambda: _array((second.weight @ first.weight).T))
        b = g.weight(self.branch, "fold_b", lambda: _array(second.weight @ first.bias + second.bias))
        return g.op("Add", [g.op("MatMul", [x, w]), b])

    def attend_first(self, attn, x: str, real) -> str:  # (B, T, S) -> (B, S): position 0's query only
        g, s = self.g, attn.qkv.out_features // 3
        first = g.op("Slice", [x, g.ints(0), g.ints(1), g.ints(1)])  # (B, 1, S)
        q = g._heads(g.matmul(attn.qkv, first, rows=slice(0, s)), 1, attn.heads_num)[0]
        k, v = g._heads(g.matmul(attn.qkv, x, rows=slice(s, 3 * s)), 2, attn.heads_num)
        return g._attention(q, k, v, attn.heads_num, attn.head_size, merge_tokens=False)

    def attend(self, attn, x: str, real) -> str:
        g = self.g
        q, k, v = g._heads(g.matmul(attn.qkv, x), 3, attn.heads_num)
        return g._attention(q, k, v, attn.heads_num, attn.head_size, merge_tokens=True)

    def pool(self, x: str, real, kind: str) -> str:
        g = self.g
        if kind == "first":
            return g.op("Squeeze", [g.op("Slice", [x, g.ints(0), g.ints(1), g.ints(1)]), g.ints(1)])
        if kind == "mean":
            total = g.op("ReduceSum", [g.op("Mul", [x, g.real_name]), g.ints(1)], keepdims=0)
            count = g.op("Max", [g.op("ReduceSum", [g.real_name, g.ints(1)], keepdims=0), g.const(np.asarray(1.0, np.float32))])
            return g.op("Div", [total, count])
        if kind == "max":
            masked = g.op("Where", [g.op("Cast", [g.real_name], to=9), x, g.const(np.asarray(NEG, np.float32))])
            return g.op("ReduceMax", [masked, g.ints(1)], keepdims=0)
        raise ValueError(f"pooling {kind!r} is not exported")

    def tanh(self, x: str) -> str:
        return self.g.op("Tanh", [x])


@dataclasses.dataclass
class StepGraphs:
    """The serialized graphs (``onnx.ModelProto``) of one model."""

    steps: list  # layers_num graphs
    full: object  # embedding + every layer + the teacher
    hidden_size: int
    labels_num: int


def _embed(g: GraphWriter, model: nn.Module, src: str, seg: str) -> str:
    emb = model.embedding
    total = None
    for name, part in emb.components.items():
        table = g.weight(part, "table", lambda p=part: _array(p.embedding.weight))
        if name == "word":
            out = g.op("Gather", [table, src], axis=0)
        elif name == "seg":
            out = g.op("Gather", [table, seg], axis=0)
        else:  # positions 0..T-1: the first T rows of the table
            length = g.op("Slice", [g.op("Shape", [src]), g.ints(1), g.ints(2)])
            out = g.op("Slice", [table, g.ints(0), length, g.ints(0)])
        total = out if total is None else g.op("Add", [total, out])
    x = g.norm(emb.layer_norm, total)
    return g.matmul(emb.projection, x) if isinstance(emb.projection, nn.Linear) else x


def _layer(g: GraphWriter, model: nn.Module, i: int, x: str) -> str:
    block = model.encoder.block(i)
    g.head_size = block.self_attn.head_size
    x = block.compute(x, g)
    if i == model.encoder.layers_num - 1:
        x = g.norm(model.encoder.final_norm, x)
    return x


def _model(g: GraphWriter, inputs: list, outputs: list, name: str):
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in g.initializers.items()]
    graph = helper.make_graph(g.nodes, name, inputs, outputs, inits)
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == "com.microsoft" for n in g.nodes):
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="uer")
    model.ir_version = 9
    return model


def build_graphs(model: nn.Module, fused_attention: bool = False) -> StepGraphs:
    """Every step's graph and the full model's, in memory (see the module docstring).
    ``fused_attention``: ONNX Runtime's ``Attention`` operator for each layer's self-attention."""
    from onnx import TensorProto, helper

    why = unsupported(model)
    if why is not None:
        raise ValueError(f"cannot export to ONNX: {why}")
    target = fastbert_target(model)
    hidden_size, labels = model.encoder.output_size, target.labels_num
    ids = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "length"])
    hid = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "length", hidden_size])
    out = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", labels])
    layers = model.encoder.layers_num

    def branch(g: GraphWriter, i: int, x: str) -> str:
        b = target.branches[i]
        return b.compute(x, g.real_name, _BranchExecutor(g, b))

    steps = []
    with torch.no_grad():
        for i in range(layers):
            g = GraphWriter(fused_attention)
            g.masks("seg")
            x = _embed(g, model, "src", "seg") if i == 0 else "hidden"
            x = _layer(g, model, i, x)
            logits = branch(g, i, x)
            g.nodes.append(helper.make_node("Identity", [x], ["hidden_out"]))
            g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
            first = [ids("src"), ids("seg")] if i == 0 else [hid("hidden"), ids("seg")]
            steps.append(_model(g, first, [hid("hidden_out"), out("logits")], f"step_{i}"))
        full = full_graph(model, branch, [ids("src"), ids("seg")], [hid("hidden_out"), out("logits")], "full",
                          fused_attention)
    return StepGraphs(steps, full, hidden_size, labels)


def full_graph(model: nn.Module, branch, inputs: list, outputs: list, name: str, fused_attention: bool = False):
    """The full model's graph: the embedding, every layer, the last layer's branch (``branch(g, i,
    x)``), answering ``hidden_out`` and ``logits``. Both exits' exports end with it."""
    from onnx import helper

    g = GraphWriter(fused_attention)
    g.masks("seg")
    x = _embed(g, model, "src", "seg")
    layers = model.encoder.layers_num
    for i in range(layers):
        x = _layer(g, model, i, x)
    g.nodes.append(helper.make_node("Identity", [branch(g, layers - 1, x)], ["logits"]))
    g.nodes.append(helper.make_node("Identity", [x], ["hidden_out"]))
    return _model(g, inputs, outputs, name)
