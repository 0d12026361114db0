import torch
import torch.nn.functional as F
from torch import nn

from uer.targets.base import Target, accuracy, require
from uer.targets.configs import NspConfig
from uer.targets.registry import TARGETS


class SentencePairTarget(Target):
    """A two-way decision about a sentence pair from the first token: dense -> tanh -> 2 logits.

    The layout is BERT's: ``dense`` is its pooler and ``output`` its ``seq_relationship`` layer,
    so a converted checkpoint lands here unchanged. Label 0 is the natural pair (BERT's IsNext,
    ALBERT's original order), 1 the corrupted one, as in BERT and ALBERT.
    """

    key: str  # the label's batch key
    target_name: str

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, 2)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, 2)
        return self.output(torch.tanh(self.dense(hidden[:, 0])))

    def forward(self, hidden, batch):
        labels = require(batch, self.key, self.target_name)  # (B,)
        logits = self.logits(hidden)
        return {"loss": F.cross_entropy(logits.float(), labels), "acc": accuracy(logits, labels)}


@TARGETS.register("nsp", config=NspConfig)
class NspTarget(SentencePairTarget):
    """Next sentence prediction (BERT). ``batch["tgt_nsp"]`` (B,): 0 = B follows A, 1 = B is random."""

    key = "tgt_nsp"
    target_name = "nsp"

    def __init__(self, cfg: NspConfig, *, hidden_size: int, **_: int) -> None:
        super().__init__(hidden_size)
        self.cfg = cfg
