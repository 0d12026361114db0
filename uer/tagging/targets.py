"""Sequence-labelling targets: ``tagging`` (one token classifier after the encoder) and
``token_exit`` (a small classifier after every layer, for token-level early exit).

Both read ``batch["tgt_tag"]`` (B, T): a tag id per token, ``-100`` where there is no tag ([CLS],
padding). The tags of a token come from its own distribution, which is what lets a token leave
the network on its own; a CRF couples all of a sentence's tags, so ``token_exit``'s optional one
(``crf: true``) decodes the full model only (:mod:`uer.tagging.crf`).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from uer.exit.targets import ExitBranches
from uer.tagging.crf import LinearChainCRF, compact
from uer.tagging.data import IGNORE
from uer.targets.base import Target, require
from uer.targets.fastbert import MODULES
from uer.targets.configs import TaggingConfig, TokenExitConfig
from uer.targets.registry import TARGETS
from uer.layers.dropout import Dropout


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    keep = labels != IGNORE
    if not bool(keep.any()):
        return logits.new_zeros(())
    return (logits.argmax(-1)[keep] == labels[keep]).float().mean().detach()


def tagging_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the tagged tokens. (B, T, C), (B, T) -> ()."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


@TARGETS.register("tagging", config=TaggingConfig)
class TaggingTarget(Target):
    """Token classification: dropout -> linear -> tags, at every position. ``batch["tgt_tag"]`` (B, T)."""

    def __init__(self, cfg: TaggingConfig, hidden_size: int, labels_num: int | None = None, **_: int) -> None:
        super().__init__()
        if not labels_num or labels_num < 2:
            raise ValueError("target 'tagging' needs labels_num >= 2 (the builder takes it from label2id)")
        self.cfg = cfg
        self.labels_num = labels_num
        self.dropout = Dropout(cfg.dropout)
        self.output = nn.Linear(hidden_size, labels_num)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, C)
        return self.output(self.dropout(hidden))

    def forward(self, hidden, batch):
        labels = require(batch, "tgt_tag", "tagging")
        logits = self.logits(hidden)
        return {"loss": tagging_loss(logits, labels), "acc": token_accuracy(logits, labels), "logits": logits.detach()}


class TokenBranch(nn.Module):
    """Per token: linear -> tanh -> linear. (..., H) -> (..., C). Position-wise, so it can run on
    any subset of tokens (the ones still in the network) and give the same numbers."""

    def __init__(self, hidden_size: int, branch_size: int, labels_num: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, branch_size)
        self.output = nn.Linear(branch_size, labels_num)
        self.dropout = Dropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.compute(hidden, MODULES)

    def compute(self, hidden, ex):
        """The maths, once, on a branch executor (``uer.targets.fastbert.BranchExecutor``: its
        ``linear_in`` drops out its input): training runs the modules, ``uer.exit.flops`` counts."""
        return ex.linear_in(self.output, ex.tanh(ex.linear_in(self.dense, hidden, self.dropout)), self.dropout)


@TARGETS.register("token_exit", config=TokenExitConfig)
class TokenExitTarget(ExitBranches):
    """A :class:`TokenBranch` after every encoder layer; the last one is the teacher.

    ``forward`` is stage 1 (teacher cross-entropy on ``batch["tgt_tag"]``); stage 2 distils per real
    token (:meth:`rows`). Inference (:class:`uer.tagging.inference.TokenExit`): a token leaves at the
    first layer where its branch is sure enough, its hidden vector frozen from then on.
    """

    def __init__(self, cfg: TokenExitConfig, hidden_size: int, labels_num: int | None = None,
                 layers_num: int | None = None, **_: int) -> None:
        super().__init__("token_exit", labels_num, layers_num)
        self.cfg = cfg
        self.branches = nn.ModuleList(TokenBranch(hidden_size, cfg.branch_size, labels_num, cfg.dropout) for _ in range(layers_num))
        # the full model's CRF (UER-py's --crf_target): not a student, so stage 1 trains it and stage 2 leaves it
        self.crf = LinearChainCRF(labels_num) if cfg.crf else None

    def rows(self, branch: TokenBranch, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return branch(hidden[real])  # one row per real token: (N, labels)

    def forward(self, layers, batch):
        labels = require(batch, "tgt_tag", "token_exit")
        logits = self.teacher(layers[-1])
        loss = tagging_loss(logits, labels)
        out = {"acc": token_accuracy(logits, labels), "logits": logits.detach()}
        if self.crf is not None:  # beside the cross-entropy, which the students still distil from
            nll = crf_nll(self.crf, logits, labels)
            loss = loss + nll
            out["crf_nll"] = nll.detach()
        return {"loss": loss, **out}


def crf_nll(crf: LinearChainCRF, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The CRF's negative log-likelihood of the tagged tokens of each row (their order kept, the
    untagged ones -- [CLS], padding, later sub-tokens of a word -- left out), summed over the rows
    and divided by the tagged tokens: on the scale of the per-token cross-entropy beside it."""
    keep = labels != IGNORE
    rows = keep.any(1)
    if not bool(rows.any()):
        return logits.new_zeros(())
    emissions, mask = compact(logits[rows].float(), keep[rows])
    tags, _ = compact(labels[rows], keep[rows])
    return crf.nll(emissions, tags, mask).sum() / keep.sum()
