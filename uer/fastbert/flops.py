"""Analytic FLOPs of FastBERT inference, per sample, from its real length.

Counted as PyTorch's ``FlopCounterMode`` counts them: 2 FLOPs per multiply-add of every matrix
product (linear layers, attention scores and weighted sums); element-wise work (norms, softmax,
activations) and embedding lookups are left out. A test checks these counts against
``FlopCounterMode`` on a real forward pass.

Nothing here restates the architecture: the counts come from running the layer's and the
branch's own ``compute`` (``TransformerLayer.compute``, ``Branch.compute``) on executors that
multiply shapes instead of tensors, the branch as ``FrozenBranch`` executes it (one query for
``first`` pooling, the output projection folded into the dense layer). ``n`` may be an int or a
tensor of lengths (one count per sample).

Padding matters: a sample alone costs ``n`` tokens, the same sample padded to 128 costs 128.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uer.encoders.transformer import TransformerEncoder
from uer.fastbert.inference import fastbert_target
from uer.layers import TransformerLayer
from uer.targets.fastbert import Branch


@dataclass(frozen=True)
class Rows:
    """A (rows, width) activation as the counters see it; ``rows`` is n, or 1 for a pooled vector."""

    rows: torch.Tensor | int
    width: int


class _Counter:
    def __init__(self) -> None:
        self.flops: torch.Tensor | int = 0

    def _matmul(self, rows, inner: int, out: int) -> None:
        self.flops = self.flops + 2 * rows * inner * out

    def linear(self, module: nn.Linear, x: Rows, *_, **__) -> Rows:
        self._matmul(x.rows, module.in_features, module.out_features)
        return Rows(x.rows, module.out_features)

    def norm(self, module, x: Rows) -> Rows:
        return x


class _LayerCounter(_Counter):
    """Executes ``TransformerLayer.compute``."""

    def attend(self, qkv: Rows, heads_num: int, dropout_p: float) -> Rows:
        h = qkv.width // 3
        self._matmul(qkv.rows, qkv.rows, 2 * h)  # scores (n x n x h) and the weighted sum (n x n x h)
        return Rows(qkv.rows, h)


class _BranchCounter(_Counter):
    """Executes ``Branch.compute`` as ``FrozenBranch`` does."""

    def linear_pair(self, first: nn.Linear, second: nn.Linear, x: Rows, dropout) -> Rows:  # folded: one linear
        self._matmul(x.rows, first.in_features, second.out_features)
        return Rows(x.rows, second.out_features)

    def attend_first(self, attn, x: Rows, real) -> Rows:
        s = x.width
        self._matmul(1, s, s)  # position 0's query
        self._matmul(x.rows, s, 2 * s)  # keys and values
        self._matmul(1, x.rows, 2 * s)  # one row of scores, one weighted sum
        return Rows(1, s)

    def attend(self, attn, x: Rows, real) -> Rows:
        qkv = self.linear(attn.qkv, x)
        return _LayerCounter.attend(self, qkv, attn.heads_num, 0.0)

    def pool(self, x: Rows, real, kind: str) -> Rows:
        return Rows(1, x.width)

    def tanh(self, x: Rows) -> Rows:
        return x


@dataclass(frozen=True)
class FlopModel:
    projection: nn.Module  # the embedding's factorised (ALBERT) projection, or Identity
    block: TransformerLayer  # every layer has the same shapes
    branch: Branch  # so has every branch
    layers_num: int

    @classmethod
    def of(cls, model) -> "FlopModel":
        if not isinstance(model.encoder, TransformerEncoder):
            raise NotImplementedError(f"analytic FLOPs cover the transformer encoder, not {type(model.encoder).__name__}")
        if model.subencoder is not None:
            raise NotImplementedError("analytic FLOPs do not cover subencoders")
        target = fastbert_target(model)
        return cls(model.embedding.projection, model.encoder.block(0), target.branches[0], model.encoder.layers_num)

    def embedding(self, n: torch.Tensor | int):
        """The factorised (ALBERT) projection, if any."""
        if not isinstance(self.projection, nn.Linear):
            return 0 * n
        counter = _Counter()
        counter.linear(self.projection, Rows(n, self.projection.in_features))
        return counter.flops

    def layer(self, n: torch.Tensor | int):
        counter = _LayerCounter()
        self.block.compute(Rows(n, self.block.self_attn.qkv.in_features), counter)
        return counter.flops

    def branch_flops(self, n: torch.Tensor | int):
        counter = _BranchCounter()
        self.branch.compute(Rows(n, self.branch.projection.in_features), None, counter)
        return counter.flops

    def full(self, n: torch.Tensor | int):
        """Backbone + teacher, no student: the model FastBERT is compared with."""
        return self.embedding(n) + self.layers_num * self.layer(n) + self.branch_flops(n)

    def early_exit(self, n: torch.Tensor | int, exit_layer: torch.Tensor | int):
        """Layers 1..exit_layer, each followed by its branch."""
        return self.embedding(n) + exit_layer * (self.layer(n) + self.branch_flops(n))
