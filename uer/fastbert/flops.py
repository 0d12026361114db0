"""Analytic FLOPs of FastBERT inference, per sample, from its real length.

Counted as PyTorch's ``FlopCounterMode`` counts them: 2 FLOPs per multiply-add of every matrix
product (linear layers, attention scores and weighted sums); element-wise work (norms, softmax,
activations) and embedding lookups are left out. A test checks these formulas against
``FlopCounterMode`` on a real forward pass.

Padding matters: a sample alone costs ``n`` tokens, the same sample padded to 128 costs 128.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.encoders.transformer import TransformerEncoder


@dataclass(frozen=True)
class FlopModel:
    emb_size: int
    hidden_size: int
    feedforward_size: int
    layers_num: int
    branch_size: int
    labels_num: int
    first_pooling: bool  # the branch computes only position 0's query

    @classmethod
    def of(cls, model) -> "FlopModel":
        from uer.fastbert.inference import fastbert_target

        if not isinstance(model.encoder, TransformerEncoder):
            raise NotImplementedError(f"analytic FLOPs cover the transformer encoder, not {type(model.encoder).__name__}")
        if model.subencoder is not None:
            raise NotImplementedError("analytic FLOPs do not cover subencoders")
        enc, target = model.encoder.cfg, fastbert_target(model)
        return cls(
            emb_size=model.config.emb_size, hidden_size=enc.hidden_size,
            feedforward_size=enc.feedforward_size, layers_num=enc.layers_num,
            branch_size=target.cfg.branch_size, labels_num=target.labels_num,
            first_pooling=target.cfg.pooling == "first",
        )

    def embedding(self, n: torch.Tensor | int):
        """The factorised (ALBERT) projection, if any."""
        return 0 * n if self.emb_size == self.hidden_size else 2 * n * self.emb_size * self.hidden_size

    def layer(self, n: torch.Tensor | int):
        h, f = self.hidden_size, self.feedforward_size
        return 2 * n * h * 3 * h + 2 * 2 * n * n * h + 2 * n * h * h + 2 * 2 * n * h * f

    def branch(self, n: torch.Tensor | int):
        h, s, c = self.hidden_size, self.branch_size, self.labels_num
        if self.first_pooling:  # FrozenBranch: one query; attention output folded into the dense layer
            attention_and_dense = 2 * s * s + 2 * n * s * 2 * s + 2 * 2 * n * s + 2 * s * s
        else:  # the module: every query, output projection, then dense on the pooled vector
            attention_and_dense = 2 * n * s * 3 * s + 2 * 2 * n * n * s + 2 * n * s * s + 2 * s * s
        return 2 * n * h * s + attention_and_dense + 2 * s * c

    def full(self, n: torch.Tensor | int):
        """Backbone + teacher, no student: the model FastBERT is compared with."""
        return self.embedding(n) + self.layers_num * self.layer(n) + self.branch(n)

    def early_exit(self, n: torch.Tensor | int, exit_layer: torch.Tensor | int):
        """Layers 1..exit_layer, each followed by its branch."""
        return self.embedding(n) + exit_layer * (self.layer(n) + self.branch(n))
