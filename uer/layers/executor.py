"""How a layer's maths is executed, kept apart from the maths itself.

A layer writes its computation once, as calls on an executor (``TransformerLayer.compute``); the
calls are the :class:`LayerExecutor` protocol. :class:`Eager` runs them on the modules as they are,
on (B, T, H) tensors; ``uer.fused`` runs them on packed (N, H) real tokens with oneDNN linears;
token exit (``uer.tagging.inference``) on the tokens still in the network; ``uer.runtime.onnx_graph``
writes ONNX nodes; ``uer.exit.flops`` multiplies shapes. A layer feature added to ``compute``
therefore reaches every path, or fails loudly on the one that lacks the executor method it needs.
"""
from __future__ import annotations

from typing import Protocol, TypeVar

import torch
from torch import nn

import torch.nn.functional as F

from uer.layers.activations import activation
from uer.layers.dropout import dropout


def split_heads(x: torch.Tensor, parts: int, heads_num: int) -> torch.Tensor:
    """(B, T, parts * H) -> (parts, B, heads, T, head_size): fused projections, one view."""
    b, t, width = x.shape
    return x.view(b, t, parts, heads_num, width // (parts * heads_num)).permute(2, 0, 3, 1, 4)


def attend(qkv: torch.Tensor, heads_num: int, mask: torch.Tensor | None, dropout_p: float = 0.0) -> torch.Tensor:
    """(B, T, 3H) fused Q, K, V -> (B, T, H) attention values, before the output projection.

    ``mask``: bool, True = may attend, or float scores to add (ALiBi), broadcastable to
    (B, heads, T, T); None = attend everywhere."""
    b, t, _ = qkv.shape
    q, k, v = split_heads(qkv, 3, heads_num)  # 3 x (B, heads, T, head_size)
    if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # bf16 / fp16 runs: SDPA wants the additive mask in the query's dtype
    if dropout_p > 0.0 and q.device.type == "cpu":
        out = _attend_with_dropout(q, k, v, mask, dropout_p)  # SDPA would draw its mask with bernoulli_
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return out.transpose(1, 2).reshape(b, t, -1)


def _attend_with_dropout(q, k, v, mask, dropout_p: float) -> torch.Tensor:
    """SDPA's maths in training on the CPU (its math path, as PyTorch runs it with dropout), with
    ``uer.layers.dropout``'s faster mask on the probabilities."""
    scores = (q @ k.transpose(-1, -2)) * (q.size(-1) ** -0.5)  # (B, heads, T, T)
    if mask is not None:
        scores = scores + mask if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
    return dropout(scores.softmax(dim=-1), dropout_p) @ v


X = TypeVar("X")  # an executor's activations: tensors, ONNX value names, shapes
Q = TypeVar("Q")  # what its ``qkv`` gives and its ``attend`` reads


class LayerExecutor(Protocol[X, Q]):
    """The calls of ``TransformerLayer.compute`` (and ``MultiHeadAttention`` / ``FeedForward.compute``).

    One meaning per name: ``linear``'s dropout acts on its *output* (the branch executors'
    ``linear_in`` is the one whose dropout acts on the input)."""

    def linear(self, module: nn.Linear, x: X, act: str | None = None, dropout: nn.Module | None = None,
               residual: X | None = None) -> X:
        """``residual + dropout(act(module(x)))``, each part optional."""
        ...

    def qkv(self, module: nn.Linear, x: X, norm: nn.Module | None) -> Q:
        """The fused Q, K, V projection of ``norm(x)`` (of ``x`` when ``norm`` is None: post-norm).

        The norm is passed rather than applied first so that an executor may project keys and
        values from other rows than the queries (token exit: queries for the tokens still in,
        keys and values for every token)."""
        ...

    def attend(self, qkv: Q, heads_num: int, dropout_p: float = 0.0) -> X:
        """Attention values (before the output projection) from what :meth:`qkv` gave."""
        ...

    def norm(self, module: nn.Module, x: X) -> X:
        ...


class Eager:
    """The reference executor: the modules themselves, dropout in training, one attention mask.
    A ``LayerExecutor[Tensor, Tensor]``."""

    __slots__ = ("mask",)

    def __init__(self, mask: torch.Tensor | None) -> None:
        self.mask = mask  # bool, broadcastable to (B, heads, T, T); True = may attend

    def linear(self, module: nn.Linear, x: torch.Tensor, act: str | None = None,
               dropout: nn.Module | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``residual + dropout(act(module(x)))``, each part optional."""
        y = module(x)
        if act is not None:
            y = activation(act)(y)
        if dropout is not None:
            y = dropout(y)
        return y if residual is None else residual + y

    def qkv(self, module: nn.Linear, x: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:  # (B, T, H) -> (B, T, 3H)
        return module(x if norm is None else norm(x))

    def attend(self, qkv: torch.Tensor, heads_num: int, dropout_p: float = 0.0) -> torch.Tensor:  # (B, T, 3H) -> (B, T, H)
        return attend(qkv, heads_num, self.mask, dropout_p)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)
