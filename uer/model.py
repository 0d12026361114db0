import torch
from torch import nn

from uer.config import Config
from uer.embeddings.embedding import Embedding
from uer.encoders.base import Encoder
from uer.layers.init import init_weights
from uer.targets.composite import CompositeTarget


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
        for part in (embedding, subencoder, encoder):
            if part is not None:
                part.apply(init_weights)
        for component in target.components.values():
            component.reset_parameters()  # each target knows its own initialisation

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
