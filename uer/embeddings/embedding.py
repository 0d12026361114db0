import torch
from torch import nn

from uer.config import ConfigError, EmbeddingConfig, Spec
from uer.embeddings.registry import EMBEDDINGS
from uer.layers import make_norm


class Embedding(nn.Module):
    """Sum of components (``[word, pos, seg]`` = BERT), then norm and dropout.

    With ``emb_size != hidden_size`` a linear map lifts the sum to the encoder's width
    (ALBERT's factorised embedding).
    """

    def __init__(self, cfg: EmbeddingConfig, components: list[Spec], vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        if not components or components[0].name != "word":
            raise ConfigError("embedding.components must start with 'word'")
        self.components = nn.ModuleDict(
            {spec.name: EMBEDDINGS.entry(spec.name).cls(spec.cfg, vocab_size=vocab_size, emb_size=cfg.emb_size) for spec in components}
        )
        self.layer_norm = make_norm(cfg.layernorm, cfg.emb_size, cfg.layernorm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = nn.Linear(cfg.emb_size, hidden_size) if cfg.emb_size != hidden_size else nn.Identity()

    @property
    def word(self) -> nn.Embedding:
        return self.components["word"].embedding

    def forward(self, src: torch.Tensor, seg: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, hidden). ``extra`` (B, T, E) is added before the norm (subencoder)."""
        emb = None
        for component in self.components.values():
            out = component(src, seg)
            emb = out if emb is None else emb + out
        if extra is not None:
            emb = emb + extra
        return self.projection(self.dropout(self.layer_norm(emb)))
