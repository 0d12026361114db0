"""FastBERT's branches (Liu et al., ACL 2020): one small classifier after every encoder layer.

The last branch is the teacher; the others are students that learn to imitate it. Each branch:
project to ``branch_size`` -> masked self-attention (``branch_heads_num`` heads) -> pool ->
dense -> tanh -> labels. ``forward`` is stage 1 (the teacher's loss on ``batch["tgt_cls"]``);
:meth:`FastBertTarget.distill_loss` is stage 2 (teacher || student divergence summed over students).

``cfg.task`` says what a branch's outputs mean; the same :class:`Branch` serves all three:

==================  ==========================  ======================  ====================================
task                outputs (``labels``)        stage 1 (teacher)       stage 2 (per student, mean over rows)
==================  ==========================  ======================  ====================================
``classification``  softmax over the labels     cross-entropy           KL of the two distributions
``multi_label``     a sigmoid per label         BCE with logits         Bernoulli KL, summed over the labels
``regression``      one value (standardised)    MSE                     MSE to the teacher's value
==================  ==========================  ======================  ====================================
"""
from __future__ import annotations

from typing import Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from uer.layers.executor import attend, split_heads
from uer.layers.pooling import pool
from uer.exit.targets import ExitBranches, exit_target
from uer.targets.base import Target, accuracy, require
from uer.targets.configs import FastBertTargetConfig  # torch-free, with the other targets' configs
from uer.targets.registry import TARGETS
from uer.layers.dropout import Dropout


class BranchAttention(nn.Module):
    """The branch's multi-head self-attention weights: a fused Q, K, V projection and an output one.

    Its maths is in :meth:`Branch.compute` (with ``first`` pooling only position 0's query is computed)."""

    def __init__(self, size: int, heads_num: int, dropout: float) -> None:
        super().__init__()
        if size % heads_num:
            raise ValueError(f"branch_size {size} is not divisible by branch_heads_num {heads_num}")
        self.heads_num, self.head_size = heads_num, size // heads_num
        self.qkv = nn.Linear(size, 3 * size)
        self.output = nn.Linear(size, size)
        self.dropout = dropout


def first_query_attention(x: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor, heads_num: int,
                          real: torch.Tensor | None, dropout_p: float = 0.0) -> torch.Tensor:
    """(B, T, S) -> (B, S): self-attention values at position 0 only, before the output projection.

    Exactly full self-attention's row 0, at 1/T of the query cost: only that row is read after."""
    b, t, s = x.shape
    q = F.linear(x[:, :1], w_qkv[:s], b_qkv[:s])  # (B, 1, S)
    k, v = split_heads(F.linear(x, w_qkv[s:], b_qkv[s:]), 2, heads_num)  # 2 x (B, heads, T, d)
    mask = None if real is None else real[:, None, None, :]  # padding is never attended to
    out = F.scaled_dot_product_attention(split_heads(q, 1, heads_num)[0], k, v, attn_mask=mask, dropout_p=dropout_p)
    return out.reshape(b, s)  # (B, heads, 1, d) -> (B, S)


X = TypeVar("X")  # an executor's activations: tensors, ONNX value names, shapes


class BranchExecutor(Protocol[X]):
    """The calls of :meth:`Branch.compute` (and ``uer.tagging.targets.TokenBranch.compute``).

    ``linear_in``'s dropout acts on its *input* (the layer executors' ``linear`` applies it to the
    output): a branch drops out what it reads. ``real``: (B, T) bool real-token mask, or None (no
    padding)."""

    def linear_in(self, module: nn.Linear, x: X, dropout: nn.Module | None = None) -> X:
        """``module(dropout(x))``."""
        ...

    def linear_pair(self, first: nn.Linear, second: nn.Linear, x: X, dropout: nn.Module) -> X:
        """``second(dropout(first(x)))``: at inference (no dropout) one linear."""
        ...

    def attend_first(self, attn: "BranchAttention", x: X, real) -> X:
        """(B, T, S) -> (B, S): self-attention values at position 0 only."""
        ...

    def attend(self, attn: "BranchAttention", x: X, real) -> X:
        """(B, T, S) -> (B, T, S): self-attention values, before the output projection."""
        ...

    def pool(self, x: X, real, kind: str) -> X:
        ...

    def tanh(self, x: X) -> X:
        ...


class Branch(nn.Module):
    """(B, T, H) layer output + (B, T) real-token mask -> (B, labels) logits.

    The maths is written once, in :meth:`compute`, as calls on a :class:`BranchExecutor`: the modules
    (training, ``forward``), :class:`FrozenBranch` (inference), the ONNX writer and
    ``uer.exit.flops`` (FLOPs) execute it."""

    def __init__(self, hidden_size: int, branch_size: int, heads_num: int, labels_num: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        self.projection = nn.Linear(hidden_size, branch_size)
        self.self_attn = BranchAttention(branch_size, heads_num, dropout)
        self.dense = nn.Linear(branch_size, branch_size)
        self.output = nn.Linear(branch_size, labels_num)
        self.dropout = Dropout(dropout)

    def forward(self, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.compute(hidden, real, MODULES)

    def compute(self, hidden: X, real, ex: BranchExecutor[X]) -> X:
        """project -> self-attention -> pool -> dense -> tanh -> labels, with dropout before dense and output."""
        attn = self.self_attn
        x = ex.linear_in(self.projection, hidden)  # (B, T, S)
        if self.pooling == "first":  # only position 0 is read after the attention: only its query
            h = ex.linear_pair(attn.output, self.dense, ex.attend_first(attn, x, real), self.dropout)  # (B, S)
        else:
            pooled = ex.pool(ex.linear_in(attn.output, ex.attend(attn, x, real)), real, self.pooling)  # (B, S)
            h = ex.linear_in(self.dense, pooled, self.dropout)
        return ex.linear_in(self.output, ex.tanh(h), self.dropout)  # (B, labels)


class _Modules:
    """Executes :meth:`Branch.compute` on the modules themselves (training: dropout, autograd).
    A ``BranchExecutor[Tensor]``."""

    @staticmethod
    def linear_in(module: nn.Linear, x: torch.Tensor, dropout: nn.Module | None = None) -> torch.Tensor:
        return module(x if dropout is None else dropout(x))

    @staticmethod
    def linear_pair(first: nn.Linear, second: nn.Linear, x: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
        return second(dropout(first(x)))

    @staticmethod
    def attend_first(attn: BranchAttention, x: torch.Tensor, real) -> torch.Tensor:
        p = attn.dropout if attn.training else 0.0
        return first_query_attention(x, attn.qkv.weight, attn.qkv.bias, attn.heads_num, real, p)

    @staticmethod
    def attend(attn: BranchAttention, x: torch.Tensor, real) -> torch.Tensor:
        mask = None if real is None else real[:, None, None, :]
        return attend(attn.qkv(x), attn.heads_num, mask, attn.dropout if attn.training else 0.0)

    @staticmethod
    def pool(x: torch.Tensor, real, kind: str) -> torch.Tensor:
        return pool(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if real is None else real, kind)

    @staticmethod
    def tanh(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


MODULES = _Modules()


class FrozenBranch:
    """A branch for inference (no dropout, no autograd), with fewer operations per call.

    At batch 1 a branch is a handful of tiny matrix products and its cost is the number of
    operator calls, not FLOPs. So it executes :meth:`Branch.compute` with plain functions on
    weights snapshot once, and folds the attention's output projection into the dense layer that
    follows it (two linears with nothing between them at inference are one linear:
    W_d (W_o a + b_o) + b_d). A snapshot: take it again after the weights change.
    """

    def __init__(self, branch: Branch) -> None:
        self.branch = branch
        with torch.no_grad():
            self.weights = {m: (m.weight.detach().clone(), m.bias.detach().clone())
                            for m in branch.modules() if isinstance(m, nn.Linear)}
            w_o, b_o = self.weights[branch.self_attn.output]
            w_d, b_d = self.weights[branch.dense]
            self.folded = (w_d @ w_o, w_d @ b_o + b_d)  # (S, S), (S,)

    def __call__(self, hidden: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """(B, T, H), (B, T) bool or None (no padding in the batch) -> (B, labels) logits.

        ``None`` lets attention run without a mask: fewer operations, which matters at batch 1."""
        return self.branch.compute(hidden, real, self)

    def linear_in(self, module: nn.Linear, x: torch.Tensor, dropout: nn.Module | None = None) -> torch.Tensor:
        return F.linear(x, *self.weights[module])  # inference: no dropout

    def linear_pair(self, first: nn.Linear, second: nn.Linear, x: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
        return F.linear(x, *self.folded)

    def attend_first(self, attn: BranchAttention, x: torch.Tensor, real) -> torch.Tensor:
        return first_query_attention(x, *self.weights[attn.qkv], attn.heads_num, real)

    def attend(self, attn: BranchAttention, x: torch.Tensor, real) -> torch.Tensor:
        mask = None if real is None else real[:, None, None, :]
        return attend(F.linear(x, *self.weights[attn.qkv]), attn.heads_num, mask)

    pool = staticmethod(_Modules.pool)
    tanh = staticmethod(_Modules.tanh)


@TARGETS.register("fastbert", config=FastBertTargetConfig)
class FastBertTarget(ExitBranches):
    """FastBERT exit branches, one per layer (last = teacher). ``batch["tgt_cls"]`` (B,) labels; ``batch["seg"]`` the real tokens."""

    def __init__(self, cfg: FastBertTargetConfig, hidden_size: int, labels_num: int | None = None,
                 layers_num: int | None = None, **_: int) -> None:
        regression = cfg.task == "regression"
        super().__init__("fastbert", labels_num, layers_num, min_labels=1 if regression else 2)
        if regression and labels_num != 1:
            raise ValueError(f"target 'fastbert' with task regression predicts one value: labels_num must be 1, got {labels_num}")
        self.cfg = cfg
        self.task = cfg.task
        self.branches = nn.ModuleList(
            Branch(hidden_size, cfg.branch_size, cfg.branch_heads_num, labels_num, cfg.pooling, cfg.dropout)
            for _ in range(layers_num)
        )

    def reset_parameters(self) -> None:
        Target.reset_parameters(self)  # anything that is not a branch linear keeps the default
        super().reset_parameters()

    def rows(self, branch: Branch, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return branch(hidden, real)  # one row per sample: (B, labels)

    def forward(self, layers, batch):
        """Stage 1: the teacher's loss. ``tgt_cls``: (B,) label ids, (B, labels) 0/1 floats
        (multi_label) or (B,) standardised values (regression)."""
        labels = require(batch, "tgt_cls", "fastbert")
        logits = self.teacher(layers[-1], batch["seg"] > 0)
        out = {"loss": self.loss(logits, labels), "logits": logits.detach()}
        if self.task == "classification":
            out["acc"] = accuracy(logits, labels)
        elif self.task == "multi_label":  # exact match: every label of the row right
            out["exact_acc"] = ((logits.detach() > 0) == (labels > 0.5)).all(-1).float().mean()
        return out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task's supervised loss of (B, labels) logits, a mean over the rows."""
        logits = logits.float()
        if self.task == "multi_label":  # a mean over rows of the sum over labels: the scale of KL below
            return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="sum") / max(len(labels), 1)
        if self.task == "regression":
            return F.mse_loss(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def divergence(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.task == "multi_label":  # KL(Bern(p_t) || Bern(p_s)) per label, summed over labels
            log_p, log_not_p = F.logsigmoid(teacher), F.logsigmoid(-teacher)
            kl = log_p.exp() * (log_p - F.logsigmoid(student)) + log_not_p.exp() * (log_not_p - F.logsigmoid(-student))
            return kl.sum(-1).mean()
        if self.task == "regression":  # the teacher's prediction is the student's target
            return F.mse_loss(student, teacher)
        return super().divergence(student, teacher)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, labels) logits -> what exit policies and users read: probabilities (softmax, or one
        sigmoid per label) or the predicted value itself (regression, standardised)."""
        if self.task == "multi_label":
            return torch.sigmoid(logits)
        if self.task == "regression":
            return logits
        # softmax from elementwise ops and reductions, not torch.softmax: its CPU kernel opens an
        # OpenMP parallel region however small the tensor, and the worker threads it wakes then
        # spin beside ONNX Runtime's next exit step. On a 2-core Xeon, at 8 x 32 tokens, a step
        # took 7.4 ms and the (8, 3) softmax after it 1.9 ms, against 5.5 and 0.1 ms this way.
        e = (logits - logits.amax(dim=-1, keepdim=True)).exp()
        return e / e.sum(dim=-1, keepdim=True)


def fastbert_target(model: nn.Module) -> FastBertTarget:
    """The fastbert component of ``model``'s target (ValueError when it has none, or another exit target)."""
    target = exit_target(model)
    if not isinstance(target, FastBertTarget):
        raise ValueError(f"the model's early-exit target is {type(target).__name__}, not fastbert")
    return target
