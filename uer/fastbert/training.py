"""How FastBERT's exit branches are trained: two ways, on the shared stages of :mod:`uer.exit.training`.

``branch_training="distill"`` (FastBERT, the default): stage 1 fine-tunes backbone + teacher with
cross-entropy, the students frozen; stage 2 freezes backbone + teacher and trains the students on
KL(teacher || student), summed over students; it needs no labels.

``branch_training="joint"`` (PABEE, Zhou et al. 2020): ONE stage. Backbone and every branch learn
together from the labels, with the cross-entropy of the branch after layer ``i`` (1-based) weighted
by ``i``: ``sum_i i * CE_i / sum_i i``. There is no stage 2: the students already learnt from the
labels, and self-distilling afterwards would pull them towards the teacher the backbone was
shaped to share with them. (Joint training runs in stage 1's slot and files, so it resumes like
stage 1; a stage-1 resume state of the other kind is refused by the trainer's signature.)

Multi-label and regression models (``target.task``) train the same two stages with their own
losses (``uer.targets.fastbert``); joint training is for classification only.

Dev criteria: stage 1 (distill), the teacher's accuracy (multi-label: micro-F1; regression:
Pearson's r); joint, the mean of the branches' accuracies
with the loss's weights (every branch may answer, so every branch counts); stage 2, the
distillation loss on the dev texts, mean over students (lower is better; label-free like the
stage itself).
"""
from __future__ import annotations

from typing import Any, Callable, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from uer.config import Config
from uer.exit import training as stages
from uer.data.loader import length_sorted_batches
from uer.exit.training import StageData, StageOptions, distill_loss_sum
from uer.fastbert.data import Encoded, collate
from uer.fastbert.evaluate import task_metrics
from uer.fastbert.report import SCORE
from uer.fused import optimize_for_inference
from uer.targets.fastbert import fastbert_target

BranchTraining = Literal["distill", "joint"]
JOINT = "stage 1 joint"  # PABEE's one stage, in stage 1's slot and files
BRANCH_TRAININGS: tuple[str, ...] = get_args(BranchTraining)


def layer_weights(layers_num: int) -> torch.Tensor:
    """PABEE's weights: the branch after layer i (1-based) counts i / sum(1..L). (L,) float, sums to 1."""
    w = torch.arange(1, layers_num + 1, dtype=torch.float32)
    return w / w.sum()


def every_branch(target, layers: list[torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """Every branch on its layer's output: (L, B, labels) logits."""
    return torch.stack([branch(hidden, real) for branch, hidden in zip(target.branches, layers)])


def joint_loss_fn(model: nn.Module) -> Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Joint training's loss for the trainer: weighted cross-entropy of every branch on the labels."""
    target = fastbert_target(model)
    weights = layer_weights(len(target.branches))

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["tgt_cls"]
        real = batch["seg"] > 0
        layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        logits = every_branch(target, layers, real).float()  # (L, B, labels)
        l, b, c = logits.shape
        ce = F.cross_entropy(logits.reshape(l * b, c), labels.repeat(l), reduction="none").view(l, b).mean(1)  # (L,)
        loss = (weights.to(ce.device) * ce).sum()
        return {"loss": loss, "first_loss": ce[0].detach(), "teacher_loss": ce[-1].detach(),
                "first_acc": (logits[0].argmax(-1) == labels).float().mean(),
                "acc": (logits[-1].argmax(-1) == labels).float().mean()}

    return loss_fn


@torch.inference_mode()
def dev_scores(model: nn.Module, dev: Encoded, pad_id: int, batch_size: int, branches: bool = False) -> dict[str, float]:
    """The teacher's score (if labelled: ``accuracy``, or ``micro_f1`` / ``pearson`` for the other
    tasks) and the mean-per-student distillation loss on ``dev``; with ``branches``, also
    ``joint_accuracy``: the branches' accuracies averaged with :func:`layer_weights`."""
    was_training = model.training
    model.eval()  # no dropout in the branches either: a dev score must not depend on the RNG
    target = fastbert_target(model)
    encoder = optimize_for_inference(model.embedding, model.encoder)  # a snapshot of the current weights
    device = next(model.parameters()).device
    kl_sum, n = 0.0, 0
    outputs, gold = [], []  # the teacher's outputs and the labels
    branch_correct = torch.zeros(len(target.branches), dtype=torch.float64)
    for index in length_sorted_batches(dev.lengths(), batch_size):
        batch = collate(dev, index, pad_id, device)
        layers = encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        real = batch["seg"] > 0
        teacher = target.teacher(layers[-1], real)
        kl_sum += distill_loss_sum(model, layers, real, teacher)[0]
        if dev.labels is not None:
            outputs.append(target.activation(teacher.float()).cpu())
            gold.append(batch["tgt_cls"].cpu())
        if branches:  # joint training: a labelled dev set (finetune checks it)
            hits = every_branch(target, layers, real).argmax(-1) == batch["tgt_cls"]  # (L, B)
            branch_correct += hits.sum(1).double().cpu()
        n += len(index)
    model.train(was_training)
    scores = {"distill_loss": kl_sum / n}
    if dev.labels is not None:  # scored as the sweep scores the test set
        scores[SCORE[target.task]] = task_metrics(target.task, torch.cat(outputs), torch.cat(gold))[SCORE[target.task]]
    if branches:
        scores["joint_accuracy"] = float((layer_weights(len(target.branches)).double() * branch_correct / n).sum())
    return scores


def fingerprint(data: Encoded) -> str:
    return stages.fingerprint(len(data), *zip(data.ids, data.segs), data.labels)


def stage_data(data: Encoded, pad_id: int) -> StageData:
    return StageData(data.lengths(), lambda index: collate(data, index, pad_id), fingerprint(data))


def unlabelled(data: Encoded) -> Encoded:
    """The rows without their labels: what stage 2 trains on (and what its resume signature names)."""
    return Encoded(data.ids, data.segs, None)


def needs_distillation(branch_training: BranchTraining) -> bool:
    """Whether stage 2 (self-distillation) follows :func:`finetune`: only for ``distill``."""
    check_branch_training(branch_training)
    return branch_training == "distill"


def check_branch_training(branch_training: str) -> None:
    if branch_training not in BRANCH_TRAININGS:
        raise ValueError(f"branch_training {branch_training!r}: expected one of {', '.join(BRANCH_TRAININGS)}")


def finetune(model: nn.Module, config: Config, train: Encoded, dev: Encoded, pad_id: int,
             opts: StageOptions, extra: dict[str, Any], branch_training: BranchTraining = "distill") -> dict[str, Any]:
    """Stage 1 on labelled ``train``.

    ``distill``: backbone + teacher, best teacher accuracy on ``dev``; the students wait for
    :func:`distill`. ``joint``: backbone + every branch with PABEE's weighted cross-entropy, best
    ``joint_accuracy`` on ``dev``; no stage 2 follows (:func:`needs_distillation`)."""
    check_branch_training(branch_training)
    if train.labels is None or dev.labels is None:
        raise ValueError("stage 1 needs labelled train and dev sets")
    joint = branch_training == "joint"
    task = fastbert_target(model).task
    if joint and task != "classification":
        raise ValueError(f"joint branch training is for classification; a {task} model self-distils (branch_training 'distill')")
    evaluate = lambda: dev_scores(model, dev, pad_id, opts.eval_batch_size, branches=joint)  # noqa: E731
    if not joint:
        return stages.finetune(model, config, opts, stage_data(train, pad_id), fingerprint(dev), evaluate, SCORE[task], extra)
    if len(fastbert_target(model).branches) < 2:
        raise ValueError("joint branch training needs an encoder of at least 2 layers")
    stages.set_trainable(model, "joint")
    return stages.run_stage(model, config, opts, list(model.named_parameters()), joint_loss_fn(model), JOINT,
                            stage_data(train, pad_id), fingerprint(dev), evaluate, "joint_accuracy", True, extra)


def distill(model: nn.Module, config: Config, texts: Encoded, dev: Encoded, pad_id: int,
            opts: StageOptions, extra: dict[str, Any], branch_training: BranchTraining = "distill") -> dict[str, Any]:
    """Stage 2: students learn KL(teacher || student) on ``texts`` (labels unused).

    Only for ``branch_training="distill"``: joint training has no stage 2 (:func:`needs_distillation`)."""
    if not needs_distillation(branch_training):
        raise ValueError(f"branch_training {branch_training!r} has no self-distillation stage; see needs_distillation()")
    evaluate = lambda: dev_scores(model, dev, pad_id, opts.eval_batch_size)  # noqa: E731
    return stages.distill(model, config, opts, stage_data(unlabelled(texts), pad_id), fingerprint(dev), evaluate, extra)
