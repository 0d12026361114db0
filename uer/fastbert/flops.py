"""FLOPs of FastBERT inference, per sample, from its real length.

Counted by ``uer.exit.flops``: the layer's and the branch's own ``compute`` run on executors that
multiply shapes, the branch as ``FrozenBranch`` executes it (one query for ``first`` pooling, the
output projection folded into the dense layer). ``n`` may be an int or a tensor of lengths (one
count per sample). Padding matters: a sample alone costs ``n`` tokens, the same sample padded to
128 costs 128.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uer.exit.flops import BranchCounter, Rows, layer_flops, projection_flops, unsupported
from uer.layers import TransformerLayer
from uer.targets.fastbert import Branch, fastbert_target


@dataclass(frozen=True)
class FlopModel:
    projection: nn.Module | None  # the embedding's factorised (ALBERT) projection, Identity, or None
    block: TransformerLayer  # every layer has the same shapes
    branch: Branch | None  # so has every branch
    layers_num: int

    @classmethod
    def of(cls, model: nn.Module) -> "FlopModel | None":
        """The counts of ``model``, or None where none is known (not a transformer, a subencoder):
        callers show "-" for None."""
        if unsupported(model) is not None:
            return None
        target = fastbert_target(model)
        return cls(model.embedding.projection, model.encoder.block(0), target.branches[0], model.encoder.layers_num)

    def embedding(self, n: torch.Tensor | int):
        """The factorised (ALBERT) projection, if any."""
        return projection_flops(self.projection, n)

    def layer(self, n: torch.Tensor | int):
        return layer_flops(self.block, n)

    def branch_flops(self, n: torch.Tensor | int):
        counter = BranchCounter()
        self.branch.compute(Rows(n, self.branch.projection.in_features), None, counter)
        return counter.flops

    def full(self, n: torch.Tensor | int):
        """Backbone + teacher, no student: the model FastBERT is compared with."""
        return self.embedding(n) + self.layers_num * self.layer(n) + self.branch_flops(n)

    def early_exit(self, n: torch.Tensor | int, exit_layer: torch.Tensor | int):
        """Layers 1..exit_layer, each followed by its branch."""
        return self.embedding(n) + exit_layer * (self.layer(n) + self.branch_flops(n))
