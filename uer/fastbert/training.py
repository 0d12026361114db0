"""How the exit branches are trained, through :class:`uer.trainer.Trainer`: two ways.

``branch_training="distill"`` (FastBERT, the default): stage 1 fine-tunes backbone + teacher with
cross-entropy, the students frozen; stage 2 freezes backbone + teacher and trains the students on
KL(teacher || student), summed over students; it needs no labels.

``branch_training="joint"`` (PABEE, Zhou et al. 2020): ONE stage. Backbone and every branch learn
together from the labels, with the cross-entropy of the branch after layer ``i`` (1-based) weighted
by ``i``: ``sum_i i * CE_i / sum_i i``. There is no stage 2: the students already learnt from the
labels, and self-distilling afterwards would pull them towards the teacher the backbone was
shaped to share with them. (Joint training runs in stage 1's slot and files, so it resumes like
stage 1; a stage-1 resume state of the other kind is refused by the trainer's signature.)

Each stage evaluates on dev at every epoch end and keeps the best weights in its own file; the
best score lives in ``trainer.user_state``, so a resumed run makes the same choice as an
uninterrupted one.

Dev criteria: stage 1 (distill), teacher accuracy; joint, the mean of the branches' accuracies
with the loss's weights (every branch may answer, so every branch counts); stage 2, the
distillation loss on the dev texts, mean over students (lower is better; label-free like the
stage itself).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence, get_args

import torch
import torch.nn.functional as F
from torch import nn

from uer.checkpoint import load_state, read_checkpoint, save_checkpoint
from uer.config import Config, to_dict
from uer.data.loader import EpochLoader
from uer.fastbert.data import Encoded, collate, length_buckets, length_sorted_batches
from uer.fastbert.inference import fastbert_target
from uer.fused import optimize_for_inference
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler

BranchTraining = Literal["distill", "joint"]
BRANCH_TRAININGS: tuple[str, ...] = get_args(BranchTraining)


@dataclass(frozen=True)
class StageOptions:
    epochs: int
    batch_size: int
    learning_rate: float
    warmup: float
    weight_decay: float
    seed: int
    report_steps: int
    checkpoint_path: str  # resume state of the stage
    best_path: str  # the best weights so far
    metrics_path: str | None = None
    progress: bool = True
    eval_batch_size: int = 64
    bucket_by_length: bool = True  # batches of similar length; the order of batches is shuffled
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA): autocast in the trainer


def backbone_and_teacher(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    students = {id(p) for s in fastbert_target(model).students() for p in s.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) not in students]


def student_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    students = {id(p) for s in fastbert_target(model).students() for p in s.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in students]


def set_trainable(model: nn.Module, stage: int | str) -> None:
    """Stage 1: everything but the students; stage 2: the students only; ``"joint"``: everything."""
    if stage not in (1, 2, "joint"):
        raise ValueError(f"stage {stage!r}: expected 1, 2 or 'joint'")
    for _, p in backbone_and_teacher(model):
        p.requires_grad_(stage in (1, "joint"))
    for _, p in student_parameters(model):
        p.requires_grad_(stage in (2, "joint"))


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

    def loss_fn(wrapped: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["tgt_cls"]
        padding = batch["seg"] > 0
        layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        logits = every_branch(target, layers, padding).float()  # (L, B, labels)
        l, b, c = logits.shape
        ce = F.cross_entropy(logits.reshape(l * b, c), labels.repeat(l), reduction="none").view(l, b).mean(1)  # (L,)
        loss = (weights.to(ce.device) * ce).sum()
        return {"loss": loss, "first_loss": ce[0].detach(), "teacher_loss": ce[-1].detach(),
                "first_acc": (logits[0].argmax(-1) == labels).float().mean(),
                "acc": (logits[-1].argmax(-1) == labels).float().mean()}

    return loss_fn


@torch.inference_mode()
def dev_scores(model: nn.Module, dev: Encoded, pad_id: int, batch_size: int, branches: bool = False) -> dict[str, float]:
    """Teacher accuracy (if labelled) and the mean-per-student distillation loss on ``dev``; with
    ``branches``, also ``joint_accuracy``: the branches' accuracies averaged with :func:`layer_weights`."""
    was_training = model.training
    target = fastbert_target(model)
    encoder = optimize_for_inference(model.embedding, model.encoder)  # a snapshot of the current weights
    device = next(model.parameters()).device
    correct, kl_sum, n = 0, 0.0, 0
    branch_correct = torch.zeros(len(target.branches), dtype=torch.float64)
    for index in length_sorted_batches(dev.lengths(), batch_size):
        batch = collate(dev, index, pad_id, device)
        emb = model.embed(batch["src"], batch["seg"])
        layers = encoder.forward_layers(emb, batch["seg"])
        padding = batch["seg"] > 0
        teacher = target.teacher(layers[-1], padding)
        if len(target.branches) > 1:
            kl_sum += float(target.distill_loss(layers, padding, teacher)["kl_per_student"]) * len(index)
        if dev.labels is not None:
            correct += int((teacher.argmax(-1) == batch["tgt_cls"]).sum())
            if branches:
                hits = every_branch(target, layers, padding).argmax(-1) == batch["tgt_cls"]  # (L, B)
                branch_correct += hits.sum(1).double().cpu()
        n += len(index)
    model.train(was_training)
    scores = {"distill_loss": kl_sum / n}
    if dev.labels is not None:
        scores["accuracy"] = correct / n
        if branches:
            scores["joint_accuracy"] = float((layer_weights(len(target.branches)).double() * branch_correct / n).sum())
    return scores


def fingerprint(data: Encoded) -> str:
    """A digest of the encoded rows: resuming on other data is refused."""
    digest = hashlib.sha1()
    for ids, segs in zip(data.ids, data.segs):
        digest.update(repr((ids, segs)).encode())
    digest.update(repr(data.labels).encode())
    return f"{len(data)} rows, sha1 {digest.hexdigest()[:16]}"


def stage_trainer(model: nn.Module, config: Config, opts: StageOptions, params: list[tuple[str, nn.Parameter]],
                  loss_fn: Callable, desc: str, lengths: Sequence[int], make_batch: Callable[[Sequence[int]], dict],
                  train_fingerprint: str, dev_fingerprint: str) -> tuple[Trainer, EpochLoader, int]:
    """What every fine-tuning stage (FastBERT's two, PABEE's one, the NER tagger's two) sets up alike:
    the epoch loader (length buckets or plain batches), a linear schedule, the Trainer with its resume
    signature, resumed if its checkpoint exists. Returns ``(trainer, loader, batches per epoch)``."""
    if opts.bucket_by_length:
        buckets = length_buckets(lengths, opts.batch_size, opts.seed)
        loader = EpochLoader(len(buckets), 1, collate=lambda index, g: make_batch(buckets[int(index[0])]), seed=opts.seed)
    else:
        loader = EpochLoader(len(lengths), opts.batch_size, collate=lambda index, g: make_batch(index), seed=opts.seed)
    per_epoch = loader.batches_per_epoch()
    total = per_epoch * opts.epochs
    optimizer = make_optimizer(params, opts.learning_rate, opts.weight_decay, device=opts.device)
    scheduler = make_scheduler(optimizer, "linear", int(opts.warmup * total), total)
    options = TrainerOptions(
        report_steps=opts.report_steps, save_checkpoint_steps=per_epoch, checkpoint_path=opts.checkpoint_path,
        metrics_path=opts.metrics_path, desc=desc, progress=opts.progress, device=opts.device, precision=opts.precision,
        resume_hint="run the same command again to resume",  # run_fastbert.py / run_ner.py resume their own output
    )
    trainer = Trainer(model, optimizer, scheduler, config, options, loss_fn=loss_fn)
    trainer.user_state = {"best": None, "best_epoch": None, "dev": []}
    trainer.signature = {
        "stage": desc, "config": {**to_dict(config), "source": None}, "epochs": opts.epochs, "batch_size": opts.batch_size,
        "learning_rate": opts.learning_rate, "seed": opts.seed, "train": train_fingerprint, "dev": dev_fingerprint,
    }
    trainer.maybe_resume(loader)
    return trainer, loader, per_epoch


def _run_stage(
    model: nn.Module, config: Config, train: Encoded, dev: Encoded, pad_id: int, opts: StageOptions,
    params: list[tuple[str, nn.Parameter]], loss_fn: Callable, score_key: str, higher_is_better: bool,
    desc: str, extra: dict[str, Any], branch_scores: bool = False,
) -> dict[str, Any]:
    trainer, loader, per_epoch = stage_trainer(
        model, config, opts, params, loss_fn, desc, train.lengths(),
        lambda index: collate(train, index, pad_id), fingerprint(train), fingerprint(dev))
    total = per_epoch * opts.epochs

    def on_step(tr: Trainer) -> None:
        if tr.step % per_epoch:
            return
        scores = dev_scores(model, dev, pad_id, opts.eval_batch_size, branches=branch_scores)
        epoch = tr.step // per_epoch
        tr.user_state["dev"].append({"epoch": epoch, **scores})
        best = tr.user_state["best"]
        value = scores[score_key]
        better = best is None or (value > best if higher_is_better else value < best)
        message = f"{desc} epoch {epoch}: dev " + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
        if better:
            tr.user_state["best"], tr.user_state["best_epoch"] = value, epoch
            save_checkpoint(opts.best_path, model, config, **extra, dev=scores, epoch=epoch)
            message += " (best so far, saved)"
        if opts.progress:
            from tqdm import tqdm

            tqdm.write(message)
        else:
            print(message, flush=True)

    trainer.fit(loader, total, on_step=on_step)
    best = read_checkpoint(opts.best_path)
    load_state(model, best["model"], opts.best_path, config.source)
    return {"best": trainer.user_state["best"], "best_epoch": trainer.user_state["best_epoch"],
            "dev": trainer.user_state["dev"], "steps": total, "history": trainer.history}


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
    if branch_training == "joint":
        if len(fastbert_target(model).branches) < 2:
            raise ValueError("joint branch training needs an encoder of at least 2 layers")
        set_trainable(model, "joint")
        return _run_stage(model, config, train, dev, pad_id, opts, list(model.named_parameters()),
                          loss_fn=joint_loss_fn(model), score_key="joint_accuracy", higher_is_better=True,
                          desc="stage 1 joint", extra=extra, branch_scores=True)
    set_trainable(model, 1)
    return _run_stage(model, config, train, dev, pad_id, opts, backbone_and_teacher(model),
                      loss_fn=lambda m, batch: m(batch), score_key="accuracy", higher_is_better=True,
                      desc="stage 1 fine-tune", extra=extra)


def distillation_loss_fn(model: nn.Module) -> Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Stage 2's loss for the trainer: the teacher is a fixed function (eval mode, no graph)."""
    target = fastbert_target(model)

    def loss_fn(wrapped: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model.embedding.eval()  # no dropout in what the students imitate
        model.encoder.eval()
        target.teacher.eval()
        padding = batch["seg"] > 0
        with torch.no_grad():
            layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
            teacher_logits = target.teacher(layers[-1], padding)
        return target.distill_loss(layers, padding, teacher_logits)

    return loss_fn


def distill(model: nn.Module, config: Config, texts: Encoded, dev: Encoded, pad_id: int,
            opts: StageOptions, extra: dict[str, Any], branch_training: BranchTraining = "distill") -> dict[str, Any]:
    """Stage 2: students learn KL(teacher || student) on ``texts`` (labels unused).

    Only for ``branch_training="distill"``: joint training has no stage 2 (:func:`needs_distillation`)."""
    if not needs_distillation(branch_training):
        raise ValueError(f"branch_training {branch_training!r} has no self-distillation stage; see needs_distillation()")
    set_trainable(model, 2)
    frozen = {n: p.detach().clone() for n, p in backbone_and_teacher(model)}
    if any(p.requires_grad for _, p in backbone_and_teacher(model)):
        raise AssertionError("backbone and teacher must be frozen in self-distillation")
    texts = Encoded(texts.ids, texts.segs, None)

    loss_fn = distillation_loss_fn(model)
    result = _run_stage(model, config, texts, dev, pad_id, opts, student_parameters(model), loss_fn,
                        score_key="distill_loss", higher_is_better=False, desc="stage 2 self-distil", extra=extra)
    for name, p in backbone_and_teacher(model):
        if not torch.equal(p.detach(), frozen[name]):
            raise AssertionError(f"{name} changed during self-distillation: backbone and teacher must stay frozen")
    set_trainable(model, 1)
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    return result
