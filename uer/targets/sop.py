from uer.targets.configs import SopConfig
from uer.targets.nsp import SentencePairTarget
from uer.targets.registry import TARGETS


@TARGETS.register("sop", config=SopConfig)
class SopTarget(SentencePairTarget):
    """Sentence order prediction (ALBERT). ``batch["tgt_sop"]`` (B,): 0 = A then B as written, 1 = swapped."""

    key = "tgt_sop"
    target_name = "sop"

    def __init__(self, cfg: SopConfig, *, hidden_size: int, **_: int) -> None:
        super().__init__(hidden_size)
        self.cfg = cfg
