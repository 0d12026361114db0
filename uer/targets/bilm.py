from torch import nn

from uer.targets.base import Target, predict_tokens, require
from uer.targets.configs import BilmConfig
from uer.targets.lm import adjacent_pairs, lm_head
from uer.targets.registry import TARGETS


@TARGETS.register("bilm", config=BilmConfig)
class BilmTarget(Target):
    """Bidirectional LM (ELMo) for the ``bi*`` RNN encoders.

    The first half of the hidden state (forward direction) predicts the next token, the second
    half (backward direction) the previous one. Both directions share one output head, as in
    ELMo; ``loss`` is the sum of the two, reported apart as ``loss_forward`` / ``loss_backward``.
    """

    def __init__(self, cfg: BilmConfig, *, vocab_size: int, hidden_size: int, emb_size: int, **_: int) -> None:
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"target 'bilm' splits the hidden state in two halves; hidden_size {hidden_size} is odd")
        self.cfg = cfg
        self.half = hidden_size // 2
        self.head = lm_head(cfg, vocab_size, self.half, emb_size)

    def check_encoder(self, encoder: nn.Module) -> None:
        # Each half must see one side only: on any other encoder position t already sees the
        # token it is asked to predict, and the loss falls to zero without learning anything.
        if not getattr(type(encoder), "bidirectional", False):
            raise ValueError(
                f"target 'bilm' needs a bidirectional RNN encoder (birnn, bilstm, bigru), whose hidden state is "
                f"[forward | backward]; {type(encoder).__name__} is not one"
            )

    def tied_decoder(self) -> nn.Linear | None:
        return self.head.decoder if self.cfg.tie_weights else None

    def forward(self, hidden, batch):
        src, seg = require(batch, "src", "bilm"), require(batch, "seg", "bilm")
        pairs = adjacent_pairs(seg)  # (B, T - 1)
        fwd = predict_tokens(self.head, hidden[:, :-1, : self.half], src[:, 1:], pairs)  # t -> t + 1
        bwd = predict_tokens(self.head, hidden[:, 1:, self.half:], src[:, :-1], pairs)  # t + 1 -> t
        return {
            "loss": fwd["loss"] + bwd["loss"],
            "loss_forward": fwd["loss"].detach(),
            "loss_backward": bwd["loss"].detach(),
            "acc_forward": fwd["acc"],
            "acc_backward": bwd["acc"],
            "denominator": fwd["denominator"],
        }
