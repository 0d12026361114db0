import torch
from torch import nn

from uer.targets.base import Target, predict_tokens, require
from uer.targets.configs import LmConfig, MlmConfig
from uer.targets.mlm import MlmHead
from uer.targets.registry import TARGETS


class PlainHead(nn.Module):
    """GPT-2's output layer: hidden -> decoder (V, E), with a linear H -> E map only where H != E."""

    def __init__(self, vocab_size: int, hidden_size: int, emb_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_size, emb_size) if hidden_size != emb_size else nn.Identity()
        self.decoder = nn.Linear(emb_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N, V)
        return self.decoder(self.projection(hidden))


def lm_head(cfg: LmConfig, vocab_size: int, hidden_size: int, emb_size: int) -> PlainHead | MlmHead:
    """A :class:`PlainHead` or BERT's :class:`MlmHead`; either has a ``decoder``
    (V, E) that the builder can tie to the word embedding."""
    if cfg.head == "mlm":
        return MlmHead(MlmConfig(act=cfg.act, layernorm_eps=cfg.layernorm_eps), vocab_size, hidden_size, emb_size)
    return PlainHead(vocab_size, hidden_size, emb_size)


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

    def __init__(self, cfg: LmConfig, *, vocab_size: int, hidden_size: int, emb_size: int, **_: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = lm_head(cfg, vocab_size, hidden_size, emb_size)

    def tied_decoder(self) -> nn.Linear | None:
        return self.head.decoder if self.cfg.tie_weights else None

    def forward(self, hidden, batch):
        src, seg = require(batch, "src", "lm"), require(batch, "seg", "lm")
        return predict_tokens(self.head, hidden[:, :-1], src[:, 1:], adjacent_pairs(seg))
