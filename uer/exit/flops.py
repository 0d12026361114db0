"""FLOPs counted by running the models' own maths on executors that multiply shapes.

Counted as PyTorch's ``FlopCounterMode`` counts them: 2 FLOPs per multiply-add of every matrix
product (linear layers, attention scores and weighted sums); element-wise work (norms, softmax,
activations) and embedding lookups are left out. Tests check the counts against ``FlopCounterMode``
on real runs, for sentence exit and for token exit.

Nothing here restates an architecture: ``TransformerLayer.compute``, ``Branch.compute`` and
``TokenBranch.compute`` run on the counters below (a ``LayerExecutor`` / ``BranchExecutor`` over
:class:`Rows`), so a layer feature reaches the count by construction. The counts are linear in
the row counts, which may be ints or tensors (one count per sample).

A layer counted with ``keys`` rows of keys and values and ``rows`` queries is token exit's partial
layer: keys and values for every real token of the sentence, everything else for the tokens
still in the network. ``keys=None``: every row is a query (the full layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uer.encoders.transformer import TransformerEncoder

Count = torch.Tensor | int | float


@dataclass(frozen=True)
class Rows:
    """A (rows, width) activation as the counters see it; ``rows`` is n, or 1 for a pooled vector."""

    rows: Count
    width: int


class Counter:
    """Adds up the FLOPs of the matrix products it is asked to run."""

    def __init__(self) -> None:
        self.flops: Count = 0

    def matmul(self, rows: Count, inner: int, out: int) -> None:
        self.flops = self.flops + 2 * rows * inner * out

    def linear(self, module: nn.Linear, x: Rows, act: str | None = None, dropout: nn.Module | None = None,
               residual: Rows | None = None) -> Rows:
        self.matmul(x.rows, module.in_features, module.out_features)
        return Rows(x.rows, module.out_features)

    def norm(self, module: nn.Module, x: Rows) -> Rows:
        return x


class LayerCounter(Counter):
    """A ``LayerExecutor[Rows, Rows]``: ``TransformerLayer.compute`` with ``keys`` rows of keys and
    values (None: as many as queries)."""

    def __init__(self, keys: Count | None = None) -> None:
        super().__init__()
        self.keys = keys

    def qkv(self, module: nn.Linear, x: Rows, norm: nn.Module | None) -> Rows:
        keys = x.rows if self.keys is None else self.keys
        q = module.out_features // 3
        self.matmul(x.rows, module.in_features, q)  # queries for the rows
        self.matmul(keys, module.in_features, module.out_features - q)  # keys and values for every key row
        return Rows(x.rows, module.out_features)

    def attend(self, qkv: Rows, heads_num: int, dropout_p: float = 0.0) -> Rows:
        h = qkv.width // 3
        keys = qkv.rows if self.keys is None else self.keys
        self.matmul(qkv.rows, keys, 2 * h)  # scores (rows x keys x h) and the weighted sum (rows x keys x h)
        return Rows(qkv.rows, h)


class BranchCounter(Counter):
    """A ``BranchExecutor[Rows]``: a branch as it runs at inference (``FrozenBranch``: one query for
    ``first`` pooling, the attention's output projection folded into the dense layer)."""

    def linear_in(self, module: nn.Linear, x: Rows, dropout: nn.Module | None = None) -> Rows:
        return self.linear(module, x)

    def linear_pair(self, first: nn.Linear, second: nn.Linear, x: Rows, dropout: nn.Module) -> Rows:  # folded: one linear
        self.matmul(x.rows, first.in_features, second.out_features)
        return Rows(x.rows, second.out_features)

    def attend_first(self, attn, x: Rows, real) -> Rows:
        s = x.width
        self.matmul(1, s, s)  # position 0's query
        self.matmul(x.rows, s, 2 * s)  # keys and values
        self.matmul(1, x.rows, 2 * s)  # one row of scores, one weighted sum
        return Rows(1, s)

    def attend(self, attn, x: Rows, real) -> Rows:
        qkv = self.linear(attn.qkv, x)
        self.matmul(x.rows, x.rows, 2 * (qkv.width // 3))
        return Rows(x.rows, qkv.width // 3)

    def pool(self, x: Rows, real, kind: str) -> Rows:
        return Rows(1, x.width)

    def tanh(self, x: Rows) -> Rows:
        return x


@dataclass(frozen=True)
class ExitFlops:
    """What both exits count from: one layer and one branch stand for all (same shapes), plus the
    embedding's factorised projection. A task adds how its rows run through them."""

    projection: nn.Module | None  # the embedding's factorised (ALBERT) projection, Identity, or None
    block: nn.Module  # every layer has the same shapes
    head: nn.Module | None  # so has every branch
    layers_num: int

    @classmethod
    def of(cls, model: nn.Module):
        """The counts of ``model``, or None where none is known (not a transformer, a subencoder):
        callers show "-" for None."""
        if not isinstance(model.encoder, TransformerEncoder) or model.subencoder is not None:
            return None
        from uer.exit.targets import exit_target

        return cls(model.embedding.projection, model.encoder.block(0), exit_target(model).branches[0],
                   model.encoder.layers_num)

    def layer(self, rows: Count, keys: Count | None = None) -> Count:
        """One layer on ``rows`` query rows (``keys`` rows of keys and values; None: ``rows``)."""
        counter = LayerCounter(keys)
        self.block.compute(Rows(rows, self.block.self_attn.qkv.in_features), counter)
        return counter.flops

    def branch(self, rows: Count) -> Count:
        """One branch as the task runs it on ``rows`` rows."""
        raise NotImplementedError

    def full(self, n: Count) -> Count:
        """Backbone + teacher on ``n`` tokens, no student: the model early exit is compared with."""
        return self.embedding(n) + self.layers_num * self.layer(n) + self.branch(n)

    def embedding(self, n):
        """The factorised (ALBERT) projection, if it is a linear; lookups are not FLOPs."""
        if not isinstance(self.projection, nn.Linear):
            return 0 * n
        counter = Counter()
        counter.linear(self.projection, Rows(n, self.projection.in_features))
        return counter.flops
