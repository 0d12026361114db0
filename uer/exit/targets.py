"""The target both early exits train: one small classifier ("branch") after every encoder layer.

The last branch is the teacher; the others are students that learn to imitate it (FastBERT's
self-distillation). A task says only how a branch reads a layer, through :meth:`ExitBranches.rows`:
sentence exit scores one row per sample (``(B, labels)``), token exit one row per real token
(``(N, labels)``). Everything else (teacher / students, the distillation loss, the initialisation,
finding the target inside a model) is written here once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uer.targets.base import Target


class ExitBranches(Target):
    """Subclasses set ``self.branches`` (one per layer, last = teacher) and implement :meth:`rows`."""

    needs_layers = True
    branches: nn.ModuleList

    def __init__(self, name: str, labels_num: int | None, layers_num: int | None, min_labels: int = 2) -> None:
        super().__init__()
        if not labels_num or labels_num < min_labels:
            raise ValueError(f"target {name!r} needs labels_num >= {min_labels} (the builder takes it from the labels)")
        if not layers_num:
            raise ValueError(f"target {name!r} needs layers_num (one branch per encoder layer)")
        self.labels_num = labels_num

    def rows(self, branch: nn.Module, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``branch`` on one layer's output: the logits of every scored row, ``(R, labels)``.
        ``hidden`` (B, T, H), ``real`` (B, T) bool (the real tokens)."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases: keeps the signal's scale through a branch's small
        linears (BERT's N(0, 0.02) shrinks it ~10x per linear and starves the branch of gradient)."""
        for module in self.branches.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def teacher(self) -> nn.Module:
        return self.branches[-1]

    def students(self) -> list[nn.Module]:
        return list(self.branches[:-1])

    def distill_loss(self, layers: list[torch.Tensor], real: torch.Tensor,
                     teacher_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Stage 2: the sum over students of KL(teacher || student), a mean over the scored rows.

        The teacher is a constant (no gradient); ``teacher_logits`` (R, labels) when the caller has it."""
        if len(self.branches) < 2:  # a 1-layer encoder has no students
            raise ValueError("self-distillation needs an encoder of at least 2 layers")
        if teacher_logits is None:
            with torch.no_grad():
                teacher_logits = self.rows(self.teacher, layers[-1], real)
        teacher_logits = teacher_logits.detach().float()  # (R, labels)
        total = None
        for branch, hidden in zip(self.students(), layers[:-1]):
            kl = self.divergence(self.rows(branch, hidden, real).float(), teacher_logits)
            total = kl if total is None else total + kl
        return {"loss": total, "kl_per_student": total.detach() / (len(self.branches) - 1)}

    def divergence(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """One student's distillation loss, a mean over the rows: KL(softmax(teacher) || softmax(student)).
        (R, labels) float logits each. A task whose outputs are not one distribution overrides it."""
        return F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), reduction="batchmean",
                        log_target=True)


def exit_target(model: nn.Module) -> ExitBranches:
    """The early-exit component of ``model``'s target (ValueError when it has none)."""
    for component in model.target.components.values():
        if isinstance(component, ExitBranches):
            return component
    raise ValueError(f"the model has no early-exit target (targets: {', '.join(model.target.components)})")
