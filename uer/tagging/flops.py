"""FLOPs of token-level early exit, per sentence, from its length and its tokens' exit layers.

Counted by ``uer.exit.flops``, as ``FlopCounterMode`` counts (a test checks it on real runs at
batch 1): the layer's own ``TransformerLayer.compute`` and the branch's ``TokenBranch.compute`` on
executors that multiply shapes. A layer with ``n`` real tokens of which ``a`` are still in computes
keys and values for all ``n`` and everything else (queries, attention, feed-forward, the layer's
branch) for the ``a``. With ``a = n`` this is the full layer. The full model is every layer on
every token plus the last branch (no student branch). In batches the attention itself runs for
all query positions (a few percent of a layer at these lengths), so batched runs do slightly more
than counted here.
"""
from __future__ import annotations

import torch

from uer.exit.flops import BranchCounter, ExitFlops, Rows


class TaggerFlops(ExitFlops):
    """Token exit: each token runs the layers up to its exit and its branch after each."""

    def branch(self, a):
        counter = BranchCounter()
        self.head.compute(Rows(a, self.head.dense.in_features), counter)
        return counter.flops

    def early_exit(self, exit_layers: torch.Tensor) -> float:
        """``exit_layers``: (n,) 1-based exit layer of each real token of one sentence."""
        n = int(exit_layers.numel())
        layers = torch.arange(1, self.layers_num + 1, dtype=exit_layers.dtype)
        a = (exit_layers[None] >= layers[:, None]).sum(1).double()  # (layers,) tokens still in at each layer
        per_layer = self.layer(a, keys=n) + self.branch(a)  # keys and values for all n, the rest for a
        return float(self.embedding(n) + torch.where(a > 0, per_layer, 0.0).sum())  # a layer nobody reaches: not run
