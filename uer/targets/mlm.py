import torch
from torch import nn

from uer.layers import activation
from uer.targets.base import Target, predict_tokens, require
from uer.targets.configs import MlmConfig
from uer.targets.registry import TARGETS

IGNORE = -100  # label of positions that are not predicted (PyTorch's cross-entropy default)


class MlmHead(nn.Module):
    """hidden -> dense -> act -> norm -> vocabulary logits (BERT's prediction head)."""

    def __init__(self, cfg: MlmConfig, vocab_size: int, hidden_size: int, emb_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, emb_size)
        self.act = activation(cfg.act)
        self.layer_norm = nn.LayerNorm(emb_size, eps=cfg.layernorm_eps)
        self.decoder = nn.Linear(emb_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N, V)
        return self.decoder(self.layer_norm(self.act(self.dense(hidden))))


@TARGETS.register("mlm", config=MlmConfig)
class MlmTarget(Target):
    """Masked LM: ``batch["tgt_mlm"]`` (B, T) holds the original id at masked positions, -100 elsewhere."""

    def __init__(self, cfg: MlmConfig, *, vocab_size: int, hidden_size: int, emb_size: int, **_: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = MlmHead(cfg, vocab_size, hidden_size, emb_size)

    def tied_decoder(self) -> nn.Linear | None:
        return self.head.decoder if self.cfg.tie_weights else None

    def forward(self, hidden, batch):
        tgt = require(batch, "tgt_mlm", "mlm")
        return predict_tokens(self.head, hidden, tgt, tgt != IGNORE)  # only masked positions reach the vocabulary
