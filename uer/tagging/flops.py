"""Analytic FLOPs of token-level early exit, per sentence, from its length and its tokens' exit layers.

Counted as ``torch.utils.flop_counter.FlopCounterMode`` counts them (2 FLOPs per multiply-add of
every matrix product; element-wise work and lookups left out); a test checks these formulas
against it on a real run at batch 1. A layer with ``n`` real tokens of which ``a`` are still in:

- keys and values for all ``n`` tokens: ``2 n H 2H``;
- queries ``2 a H H``, scores and weighted sum ``2 * 2 a n H``, output ``2 a H H``;
- feed-forward ``2 * 2 a H F``; the layer's branch ``2 a (H S + S C)``.

With ``a = n`` this is the full layer. The full model is every layer on every token plus the
last branch (no student branch). In batches the attention itself runs for all query positions
(a few percent of a layer at these lengths), so batched runs do slightly more than counted here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.encoders.transformer import TransformerEncoder


@dataclass(frozen=True)
class TaggerFlops:
    emb_size: int
    hidden_size: int
    feedforward_size: int
    layers_num: int
    branch_size: int
    labels_num: int

    @classmethod
    def of(cls, model) -> "TaggerFlops":
        from uer.tagging.inference import token_exit_target

        if not isinstance(model.encoder, TransformerEncoder):
            raise NotImplementedError(f"analytic FLOPs cover the transformer encoder, not {type(model.encoder).__name__}")
        if model.subencoder is not None:
            raise NotImplementedError("analytic FLOPs do not cover subencoders")
        enc, target = model.encoder.cfg, token_exit_target(model)
        return cls(model.config.embedding.emb_size, enc.hidden_size, enc.feedforward_size, enc.layers_num,
                   target.cfg.branch_size, target.labels_num)

    def embedding(self, n):
        return 0 * n if self.emb_size == self.hidden_size else 2 * n * self.emb_size * self.hidden_size

    def layer(self, n, a):
        h, f = self.hidden_size, self.feedforward_size
        return 2 * n * h * 2 * h + 2 * a * h * h + 2 * 2 * a * n * h + 2 * a * h * h + 2 * 2 * a * h * f

    def branch(self, a):
        return 2 * a * (self.hidden_size * self.branch_size + self.branch_size * self.labels_num)

    def full(self, n):
        """Backbone + teacher on ``n`` tokens."""
        return self.embedding(n) + self.layers_num * self.layer(n, n) + self.branch(n)

    def early_exit(self, exit_layers: torch.Tensor) -> float:
        """``exit_layers``: (n,) 1-based exit layer of each real token of one sentence."""
        n = int(exit_layers.numel())
        total = self.embedding(n)
        for layer in range(1, self.layers_num + 1):
            a = int((exit_layers >= layer).sum())
            if a == 0:
                break
            total += self.layer(n, a) + self.branch(a)
        return float(total)
