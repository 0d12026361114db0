import torch
from torch import nn

from uer.config import Config
from uer.embeddings import Embedding
from uer.encoders import Encoder
from uer.targets import CompositeTarget


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit norms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and module.weight is not None:
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


class Model(nn.Module):
    """embedding (+ subencoder) -> encoder -> targets. Built by :func:`uer.build_model`."""

    def __init__(
        self,
        config: Config,
        embedding: Embedding,
        encoder: Encoder,
        target: CompositeTarget,
        subencoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.subencoder = subencoder
        self.encoder = encoder
        self.target = target
        self.apply(init_weights)

    def embed(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, H)
        extra = self.subencoder(src) if self.subencoder is not None else None
        return self.embedding(src, seg, extra)

    def encode(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T, H)
        return self.encoder(self.embed(src, seg), seg)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        emb = self.embed(batch["src"], batch["seg"])
        if self.target.needs_layers:
            layers = self.encoder.forward_layers(emb, batch["seg"])
        else:
            layers = [self.encoder(emb, batch["seg"])]
        return self.target(layers, batch)
