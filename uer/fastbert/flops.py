"""FLOPs of FastBERT inference, per sample, from its real length.

Counted by ``uer.exit.flops``: the layer's and the branch's own ``compute`` run on executors that
multiply shapes, the branch as ``FrozenBranch`` executes it (one query for ``first`` pooling, the
output projection folded into the dense layer). ``n`` may be an int or a tensor of lengths (one
count per sample). Padding matters: a sample alone costs ``n`` tokens, the same sample padded to
128 costs 128.
"""
from __future__ import annotations

import torch

from uer.exit.flops import BranchCounter, ExitFlops, Rows


class FlopModel(ExitFlops):
    """Sentence exit: every sample runs the layers up to its exit and one branch after each."""

    def branch(self, n: torch.Tensor | int):
        counter = BranchCounter()
        self.head.compute(Rows(n, self.head.projection.in_features), None, counter)
        return counter.flops

    def early_exit(self, n: torch.Tensor | int, exit_layer: torch.Tensor | int):
        """Layers 1..exit_layer, each followed by its branch."""
        return self.embedding(n) + exit_layer * (self.layer(n) + self.branch(n))
