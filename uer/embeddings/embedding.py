import torch
from torch import nn

from uer.layers import make_norm
from uer.layers.dropout import Dropout


class Embedding(nn.Module):
    """Sum of components (``[word, pos, seg]`` = BERT), then norm and dropout.

    ``components`` are built by the builder (``word`` first). With ``emb_size != hidden_size`` a
    linear map lifts the sum to the encoder's width (ALBERT's factorised embedding).
    """

    def __init__(self, components: nn.ModuleDict, *, emb_size: int, hidden_size: int, dropout: float,
                 layernorm: str, layernorm_eps: float) -> None:
        super().__init__()
        if "word" not in components or next(iter(components)) != "word":
            raise ValueError("embedding components must start with 'word'")
        self.components = components
        self.layer_norm = make_norm(layernorm, emb_size, layernorm_eps)
        self.dropout = Dropout(dropout)
        self.projection = nn.Linear(emb_size, hidden_size) if emb_size != hidden_size else nn.Identity()

    @property
    def word(self) -> nn.Embedding:
        return self.components["word"].embedding

    @property
    def max_seq_length(self) -> int | None:
        """The longest sequence every component can embed (None: no limit)."""
        limits = [c.max_seq_length for c in self.components.values() if c.max_seq_length is not None]
        return min(limits) if limits else None

    def forward(self, src: torch.Tensor, seg: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, hidden). ``extra`` (B, T, E) is added before the norm (subencoder)."""
        emb = None
        for component in self.components.values():
            out = component(src, seg)
            emb = out if emb is None else emb + out
        if extra is not None:
            emb = emb + extra
        return self.projection(self.dropout(self.layer_norm(emb)))
