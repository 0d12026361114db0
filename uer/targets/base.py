import torch
from torch import nn

from uer.layers.init import init_weights
from uer.layers.losses import token_cross_entropy


class Target(nn.Module):
    """A training objective on top of the encoder.

    ``forward(hidden, batch)`` returns a dict with a scalar ``loss`` and detached metrics; the
    composite prefixes each key with the target's name (``mlm_loss``, ``nsp_acc``) and sums the
    losses into ``loss``. A target that sets ``needs_layers`` receives the list of every layer's
    output instead of the last one (FastBERT's per-layer branches).
    """

    needs_layers: bool = False

    def reset_parameters(self) -> None:
        """BERT's N(0, 0.02) initialisation; targets with other needs override it."""
        self.apply(init_weights)

    def check_encoder(self, encoder: nn.Module) -> None:
        """Raise ValueError if this target cannot learn anything on ``encoder`` (called by the builder)."""

    def tied_decoder(self) -> nn.Linear | None:
        """An output layer (V, E) that the builder ties to the word embedding, or None."""
        return None

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).float().mean().detach() if labels.numel() else logits.new_zeros(())


def require(batch: dict[str, torch.Tensor], key: str, target: str) -> torch.Tensor:
    if key not in batch:
        raise KeyError(f"target {target!r} needs batch[{key!r}]; the batch has {', '.join(sorted(batch))}")
    return batch[key]


def predict_tokens(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy of ``head(hidden)`` against ``labels`` where ``selected`` (all (B, T', ...))."""
    logits = head(hidden[selected])  # only predicted positions reach the vocabulary projection: (N, V)
    labels = labels[selected]
    if labels.numel() == 0:
        loss = logits.sum() * 0.0  # 0, but keeps the graph (DDP) when a batch has nothing to predict
        acc = logits.new_zeros(())
    else:
        loss, acc = token_cross_entropy(logits, labels)  # F.cross_entropy's loss and gradient, faster on CPU
    return {"loss": loss, "acc": acc, "denominator": torch.tensor(float(labels.numel()))}
