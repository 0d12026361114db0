import torch
import torch.nn.functional as F
from torch import nn

from uer.layers.pooling import pool
from uer.targets.base import Target, accuracy, require
from uer.targets.configs import ClsConfig
from uer.targets.registry import TARGETS


@TARGETS.register("cls", config=ClsConfig)
class ClsTarget(Target):
    """Sequence classification: pool -> dense -> tanh -> labels. ``batch["tgt_cls"]`` (B,)."""

    def __init__(self, cfg: ClsConfig, *, hidden_size: int, labels_num: int | None = None, **_: int) -> None:
        super().__init__()
        if not labels_num or labels_num < 2:
            raise ValueError(f"target 'cls' needs labels_num >= 2 (the builder takes it from the dataset), got {labels_num}")
        self.cfg = cfg
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, labels_num)

    def logits(self, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:  # -> (B, labels)
        return self.output(torch.tanh(self.dense(pool(hidden, real, self.cfg.pooling))))

    def forward(self, hidden, batch):
        logits = self.logits(hidden, batch["seg"] > 0)
        labels = require(batch, "tgt_cls", "cls")
        return {"loss": F.cross_entropy(logits.float(), labels), "acc": accuracy(logits, labels), "logits": logits.detach()}
