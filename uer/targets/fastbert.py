"""FastBERT's branches (Liu et al., ACL 2020): one small classifier after every encoder layer.

The last branch is the teacher; the others are students that learn to imitate it. Each branch:
project to ``branch_size`` -> masked self-attention (``branch_heads_num`` heads) -> pool ->
dense -> tanh -> labels. ``forward`` is stage 1 (teacher cross-entropy on ``batch["tgt_cls"]``);
:meth:`FastBertTarget.distill_loss` is stage 2 (KL(teacher || student) summed over students).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uer.layers.pooling import pool
from uer.targets.base import Target, accuracy, require
from uer.targets.configs import FastBertTargetConfig  # torch-free, with the other targets' configs
from uer.targets.registry import TARGETS


class BranchAttention(nn.Module):
    """Multi-head self-attention that can answer only the queries that are pooled.

    With ``first`` pooling only position 0 is read after the attention, so only its query is
    computed: the result is exactly that of full self-attention at position 0, at 1/T of the cost.
    """

    def __init__(self, size: int, heads_num: int, dropout: float) -> None:
        super().__init__()
        if size % heads_num:
            raise ValueError(f"branch_size {size} is not divisible by branch_heads_num {heads_num}")
        self.heads_num, self.head_size = heads_num, size // heads_num
        self.qkv = nn.Linear(size, 3 * size)
        self.output = nn.Linear(size, size)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, first_only: bool) -> torch.Tensor:
        """x: (B, T, S); mask: (B, 1, 1, T) bool, True = real token -> (B, T or 1, S)."""
        b, t, s = x.shape
        if first_only:
            w_q, w_kv = self.qkv.weight.split([s, 2 * s])  # (S, S), (2S, S)
            b_q, b_kv = self.qkv.bias.split([s, 2 * s])
            q = F.linear(x[:, :1], w_q, b_q).view(b, 1, 1, self.heads_num, self.head_size)
            kv = F.linear(x, w_kv, b_kv).view(b, t, 2, self.heads_num, self.head_size)
            q, k, v = q.permute(2, 0, 3, 1, 4)[0], *kv.permute(2, 0, 3, 1, 4)
            t_out = 1
        else:
            q, k, v = self.qkv(x).view(b, t, 3, self.heads_num, self.head_size).permute(2, 0, 3, 1, 4)
            t_out = t
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.output(out.transpose(1, 2).reshape(b, t_out, s))  # (B, T_out, S)


class Branch(nn.Module):
    """(B, T, H) layer output + (B, T) real-token mask -> (B, labels) logits."""

    def __init__(self, hidden_size: int, branch_size: int, heads_num: int, labels_num: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        self.projection = nn.Linear(hidden_size, branch_size)
        self.self_attn = BranchAttention(branch_size, heads_num, dropout)
        self.dense = nn.Linear(branch_size, branch_size)
        self.output = nn.Linear(branch_size, labels_num)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = self.projection(hidden)  # (B, T, S)
        mask = padding[:, None, None, :]  # (B, 1, 1, T): padding is never attended to
        if self.pooling == "first":
            pooled = self.self_attn(x, mask, first_only=True)[:, 0]  # (B, S)
        else:
            pooled = pool(self.self_attn(x, mask, first_only=False), padding, self.pooling)  # (B, S)
        return self.output(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


class FrozenBranch:
    """A branch for inference (no dropout, no autograd), with fewer operations per call.

    At batch 1 a branch is a handful of tiny matrix products and its cost is the number of
    operator calls, not FLOPs. So: plain functions instead of module calls, and the attention's
    output projection folded into the dense layer that follows it (two linears with nothing
    between them at inference are one linear: W_d (W_o a + b_o) + b_d). Same maths as ``Branch``.
    A snapshot: take it again after the weights change.
    """

    def __init__(self, branch: Branch) -> None:
        attn = branch.self_attn
        s = attn.qkv.weight.shape[1]
        with torch.no_grad():
            self.pooling = branch.pooling
            self.heads, self.head_size = attn.heads_num, attn.head_size
            self.w_p, self.b_p = branch.projection.weight.detach().clone(), branch.projection.bias.detach().clone()
            self.w_q, self.w_kv = (w.contiguous() for w in attn.qkv.weight.detach().split([s, 2 * s]))
            self.b_q, self.b_kv = (b.contiguous() for b in attn.qkv.bias.detach().split([s, 2 * s]))
            w_d, b_d = branch.dense.weight.detach(), branch.dense.bias.detach()
            self.w_od = w_d @ attn.output.weight.detach()  # (S, S)
            self.b_od = w_d @ attn.output.bias.detach() + b_d
            self.w_c, self.b_c = branch.output.weight.detach().clone(), branch.output.bias.detach().clone()
        self.module = branch  # mean / max pooling: every query is needed, the module runs as is

    def __call__(self, hidden: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """(B, T, H), (B, T) bool or None (no padding in the batch) -> (B, labels) logits.

        ``None`` lets attention run without a mask: fewer operations, which matters at batch 1."""
        b, t, _ = hidden.shape
        if self.pooling != "first":
            return self.module(hidden, hidden.new_ones(b, t, dtype=torch.bool) if padding is None else padding)
        x = F.linear(hidden, self.w_p, self.b_p)  # (B, T, S)
        kv = F.linear(x, self.w_kv, self.b_kv).view(b, t, 2, self.heads, self.head_size).permute(2, 0, 3, 1, 4)
        q = F.linear(x[:, :1], self.w_q, self.b_q).view(b, 1, self.heads, self.head_size).transpose(1, 2)
        mask = None if padding is None else padding[:, None, None, :]
        a = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask).reshape(b, -1)  # (B, S): 1 query
        return F.linear(torch.tanh(F.linear(a, self.w_od, self.b_od)), self.w_c, self.b_c)


@TARGETS.register("fastbert", config=FastBertTargetConfig)
class FastBertTarget(Target):
    """FastBERT exit branches, one per layer (last = teacher). ``batch["tgt_cls"]`` (B,) labels; ``batch["seg"]`` the padding."""

    needs_layers = True

    def __init__(self, cfg: FastBertTargetConfig, hidden_size: int, labels_num: int | None = None,
                 layers_num: int | None = None, **_: int) -> None:
        super().__init__()
        if not labels_num or labels_num < 2:
            raise ValueError("target 'fastbert' needs labels_num >= 2 (the builder takes it from the dataset)")
        if not layers_num:
            raise ValueError("target 'fastbert' needs layers_num (one branch per encoder layer)")
        self.cfg = cfg
        self.labels_num = labels_num
        self.branches = nn.ModuleList(
            Branch(hidden_size, cfg.branch_size, cfg.branch_heads_num, labels_num, cfg.pooling, cfg.dropout)
            for _ in range(layers_num)
        )

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases: variance-preserving through the branch's four linears.

        BERT's N(0, 0.02) (the default of other targets) shrinks a signal ~10x per small linear
        layer; four in a row leave the branch with vanishing gradients."""
        super().reset_parameters()  # norms and anything else keep the default
        for module in self.branches.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def teacher(self) -> Branch:
        return self.branches[-1]

    def students(self) -> list[Branch]:
        return list(self.branches[:-1])

    def branch_logits(self, i: int, hidden: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Logits of branch ``i`` (0-based, the layer it follows): (B, labels)."""
        return self.branches[i](hidden, padding)

    def all_logits(self, layers: list[torch.Tensor], padding: torch.Tensor) -> torch.Tensor:
        """Every branch on its layer: (layers, B, labels)."""
        return torch.stack([branch(h, padding) for branch, h in zip(self.branches, layers)])

    def forward(self, layers, batch):
        """Stage 1: teacher cross-entropy."""
        labels = require(batch, "tgt_cls", "fastbert")
        logits = self.teacher(layers[-1], batch["seg"] > 0)
        return {"loss": F.cross_entropy(logits.float(), labels), "acc": accuracy(logits, labels), "logits": logits.detach()}

    def distill_loss(self, layers: list[torch.Tensor], padding: torch.Tensor, teacher_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Stage 2: sum over students of KL(teacher || student), mean over the batch.

        The teacher's distribution is a constant (computed without gradient)."""
        if teacher_logits is None:
            with torch.no_grad():
                teacher_logits = self.teacher(layers[-1], padding)
        target = F.log_softmax(teacher_logits.detach().float(), dim=-1)  # (B, labels)
        total = None
        for branch, hidden in zip(self.students(), layers[:-1]):
            log_q = F.log_softmax(branch(hidden, padding).float(), dim=-1)
            kl = F.kl_div(log_q, target, reduction="batchmean", log_target=True)
            total = kl if total is None else total + kl
        if total is None:  # a 1-layer encoder has no students
            raise ValueError("self-distillation needs an encoder of at least 2 layers")
        return {"loss": total, "kl_per_student": total.detach() / (len(self.branches) - 1)}
