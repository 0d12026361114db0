from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uer.targets.base import Target, accuracy, require
from uer.targets.mlm import MlmConfig, MlmHead
from uer.targets.registry import TARGETS


@dataclass(frozen=True)
class LmConfig:
    head: Literal["plain", "mlm"] = "plain"  # plain: GPT-2's decoder; mlm: dense -> act -> norm -> decoder
    act: Literal["gelu", "gelu_fast", "relu", "silu"] = "gelu"  # mlm head only
    layernorm_eps: float = 1e-12  # mlm head only
    tie_weights: bool = True  # decoder shares the word embedding matrix (the builder ties them)


class PlainHead(nn.Module):
    """GPT-2's output layer: hidden -> decoder (V, E), with a linear H -> E map only where H != E."""

    def __init__(self, vocab_size: int, hidden_size: int, emb_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_size, emb_size) if hidden_size != emb_size else nn.Identity()
        self.decoder = nn.Linear(emb_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N, V)
        return self.decoder(self.projection(hidden))


def lm_head(cfg: LmConfig, vocab_size: int, hidden_size: int, emb_size: int) -> PlainHead | MlmHead:
    """Either head has a ``decoder`` (V, E) that the builder can tie to the word embedding."""
    if cfg.head == "mlm":
        return MlmHead(MlmConfig(act=cfg.act, layernorm_eps=cfg.layernorm_eps), vocab_size, hidden_size, emb_size)
    return PlainHead(vocab_size, hidden_size, emb_size)


def predict_tokens(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy of ``head(hidden)`` against ``labels`` where ``selected`` (all (B, T', ...))."""
    logits = head(hidden[selected])  # only predicted positions reach the vocabulary projection: (N, V)
    labels = labels[selected]
    if labels.numel() == 0:
        loss = logits.sum() * 0.0  # keeps the graph (DDP) when a batch has nothing to predict
    else:
        loss = F.cross_entropy(logits.float(), labels)
    return {"loss": loss, "acc": accuracy(logits, labels), "denominator": torch.tensor(float(labels.numel()))}


def adjacent_pairs(seg: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T - 1) bool: positions t and t + 1 are both real tokens."""
    real = seg > 0
    return real[:, :-1] & real[:, 1:]


@TARGETS.register("lm", config=LmConfig)
class LmTarget(Target):
    """Next-token prediction from ``batch["src"]`` itself: hidden[:, t] predicts src[:, t + 1].

    Pairs whose next token is padding are not predicted. Only meaningful when position t cannot
    see t + 1: a causal encoder (transformer ``mask: causal``, gatedcnn, unidirectional RNNs).
    """

    def __init__(self, cfg: LmConfig, vocab_size: int, hidden_size: int, emb_size: int, **_: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = lm_head(cfg, vocab_size, hidden_size, emb_size)

    def tied_decoder(self) -> nn.Linear | None:
        return self.head.decoder if self.cfg.tie_weights else None

    def forward(self, hidden, batch):
        src, seg = require(batch, "src", "lm"), require(batch, "seg", "lm")
        return predict_tokens(self.head, hidden[:, :-1], src[:, 1:], adjacent_pairs(seg))
