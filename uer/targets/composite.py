import torch
from torch import nn


class CompositeTarget(nn.Module):
    """Several targets on one encoder (``[mlm, nsp]`` = BERT); their losses add up.

    ``components`` are built by the builder, keyed by target name."""

    def __init__(self, components: nn.ModuleDict) -> None:
        super().__init__()
        self.components = components

    @property
    def needs_layers(self) -> bool:
        return any(t.needs_layers for t in self.components.values())

    def forward(self, layers: list[torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``layers``: every layer's output if ``needs_layers``, else just ``[last]``."""
        out: dict[str, torch.Tensor] = {}
        total = None
        for name, target in self.components.items():
            result = target(layers if target.needs_layers else layers[-1], batch)
            total = result["loss"] if total is None else total + result["loss"]
            out.update({f"{name}_{key}": value for key, value in result.items()})
        out["loss"] = total
        return out
