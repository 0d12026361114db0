"""The training stages every early exit shares, on :class:`uer.trainer.Trainer`.

Stage 1 fine-tunes backbone + teacher on the labels (the students frozen); stage 2 freezes
backbone + teacher (checked: they must not change) and trains the students on KL(teacher ||
student), which needs no labels. A task (``uer.fastbert``, ``uer.tagging``) hands in its rows
(:class:`StageData`), its stage-1 loss and its dev evaluation; this module owns the rest: the
parameter split, the epoch loader, the schedule, the resume signature, the per-epoch dev
evaluation and the best-weights file. The best score lives in ``trainer.user_state``, so a
resumed run makes the same choice as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from uer.checkpoint import load_state, read_checkpoint, save_checkpoint
from uer.config import Config, to_dict
from uer.data.loader import EpochLoader, length_buckets
from uer.exit.targets import exit_target
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler
from uer.utils.distributed import barrier, broadcast, is_main_process, shard, world_size

Batch = dict[str, torch.Tensor]
FINETUNE, DISTILL = "stage 1 fine-tune", "stage 2 self-distil"  # the stages' names (messages, resume signatures)
LossFn = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]  # (the model, a batch) -> losses and metrics


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
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA): autocast in the trainer
    log: Callable[[str], None] | None = None  # where the per-epoch dev line goes (the CLI prints it)


def batch_rows(batch: Batch) -> int:
    return int(batch["src"].shape[0])


@dataclass(frozen=True)
class StageData:
    """The rows a stage trains on, as the trainer needs them."""

    lengths: Sequence[int]  # tokens per row (length buckets)
    make_batch: Callable[[Sequence[int]], Batch]  # row indices -> a batch on the CPU
    fingerprint: str  # what the resume signature records (see :func:`fingerprint`)
    # what the stage's loss is a mean over (samples; tagged or real tokens): under torchrun each
    # rank's loss is weighted by its share of the global count, so N processes take one process's step
    count: Callable[[Batch], int] = batch_rows


def fingerprint(rows: int, *parts: Any) -> str:
    """A digest of a data set's rows: resuming on other data is refused."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(repr(part).encode())
    return f"{rows} rows, sha1 {digest.hexdigest()[:16]}"


def split_parameters(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """``(backbone and teacher, students)``: what stage 1 trains, and what stage 2 trains."""
    students = {id(p) for s in exit_target(model).students() for p in s.parameters()}
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if id(p) not in students], [(n, p) for n, p in named if id(p) in students]


def set_trainable(model: nn.Module, stage: int | str) -> None:
    """Stage 1: everything but the students; stage 2: the students only; ``"joint"``: everything."""
    if stage not in (1, 2, "joint"):
        raise ValueError(f"stage {stage!r}: expected 1, 2 or 'joint'")
    backbone, students = split_parameters(model)
    for _, p in backbone:
        p.requires_grad_(stage in (1, "joint"))
    for _, p in students:
        p.requires_grad_(stage in (2, "joint"))


def stage_trainer(model: nn.Module, config: Config, opts: StageOptions, params: list[tuple[str, nn.Parameter]],
                  loss_fn: LossFn, desc: str, train: StageData, dev_fingerprint: str) -> tuple[Trainer, EpochLoader, int]:
    """The epoch loader (length buckets), a linear schedule, the Trainer with its
    resume signature, resumed if its checkpoint exists. Returns ``(trainer, loader, batches per epoch)``."""
    def collate(rows: Sequence[int]) -> Batch:  # one global batch -> this rank's share of it
        mine, real = shard([int(i) for i in rows])
        batch = train.make_batch(mine)
        if world_size() > 1:
            batch["share"] = torch.tensor(float(train.count(batch) if real else 0))
        return batch

    buckets = length_buckets(train.lengths, opts.batch_size, opts.seed)  # similar lengths; the batches' order shuffled
    loader = EpochLoader(len(buckets), 1, collate=lambda index, g: collate(buckets[int(index[0])]), seed=opts.seed)
    per_epoch = loader.batches_per_epoch()
    total = per_epoch * opts.epochs
    optimizer = make_optimizer(params, opts.learning_rate, opts.weight_decay, device=opts.device)
    scheduler = make_scheduler(optimizer, "linear", int(opts.warmup * total), total)
    options = TrainerOptions(
        report_steps=opts.report_steps, save_checkpoint_steps=per_epoch, checkpoint_path=opts.checkpoint_path,
        metrics_path=opts.metrics_path, desc=desc, progress=opts.progress, device=opts.device, precision=opts.precision,
        resume_hint="run the same command again to resume",  # run_fastbert.py / run_ner.py resume their own output
        log=opts.log,
    )
    trainer = Trainer(StageLoss(model, loss_fn), optimizer, scheduler, config, options, loss_fn=lambda stage, batch: stage(batch))
    trainer.user_state = {"best": None, "best_epoch": None, "dev": []}
    trainer.signature = stage_signature(desc, config, opts.epochs, opts.batch_size, opts.learning_rate, opts.seed,
                                        train.fingerprint, dev_fingerprint)
    trainer.maybe_resume(loader)
    return trainer, loader, per_epoch


class StageLoss(nn.Module):
    """A stage's loss as a module, so that DDP, which syncs gradients through ``forward``, wraps the
    stage's whole computation (stage 2 and joint training do not go through ``model.forward``).
    Its state is the model's own: resume files keep the model's keys.

    Under torchrun the loss also reports the rank's share of the global count as a ``denominator``,
    which the trainer turns into the global mean (a stand-in row counts 0)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        share = batch.pop("share", None)
        out = self.loss_fn(self.model, batch)
        if share is not None:
            out = {**out, "stage_loss": out["loss"], "stage_denominator": share}
        return out

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.model.load_state_dict(*args, **kwargs)


def stage_signature(stage: str, config: Config, epochs: int, batch_size: int, learning_rate: float, seed: int,
                    train_fingerprint: str, dev_fingerprint: str) -> dict[str, Any]:
    """What a stage's resume state must match (the pipelines check it before writing anything)."""
    return {"stage": stage, "config": to_dict(config), "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "seed": seed, "train": train_fingerprint, "dev": dev_fingerprint}


def run_stage(model: nn.Module, config: Config, opts: StageOptions, params: list[tuple[str, nn.Parameter]],
              loss_fn: LossFn, desc: str, train: StageData, dev_fingerprint: str,
              evaluate: Callable[[], dict[str, float]], score_key: str, higher_is_better: bool,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Train one stage; at every epoch end ``evaluate()`` on dev, keeping the best weights by
    ``score_key``. The model ends with the best weights. Returns the stage's summary."""
    trainer, loader, per_epoch = stage_trainer(model, config, opts, params, loss_fn, desc, train, dev_fingerprint)
    total = per_epoch * opts.epochs

    def on_step(tr: Trainer) -> None:
        if tr.step % per_epoch:
            return
        scores = broadcast(evaluate() if is_main_process() else None)  # dev is scored once, by rank 0
        epoch = tr.step // per_epoch
        tr.user_state["dev"].append({"epoch": epoch, **scores})
        best, value = tr.user_state["best"], scores[score_key]
        message = f"{desc} epoch {epoch}: dev " + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
        if best is None or (value > best if higher_is_better else value < best):
            tr.user_state["best"], tr.user_state["best_epoch"] = value, epoch
            if is_main_process():
                save_checkpoint(opts.best_path, model, config, **extra, dev=scores, epoch=epoch)
            message += " (best so far, saved)"
        if opts.log is not None and is_main_process():
            opts.log(message)

    trainer.fit(loader, total, on_step=on_step)
    barrier()  # rank 0's best weights are on disk before anyone reads them
    best = read_checkpoint(opts.best_path)
    load_state(model, best["model"], opts.best_path, config.source)
    return {"best": trainer.user_state["best"], "best_epoch": trainer.user_state["best_epoch"],
            "dev": trainer.user_state["dev"], "steps": total, "history": trainer.history}


def finetune(model: nn.Module, config: Config, opts: StageOptions, train: StageData, dev_fingerprint: str,
             evaluate: Callable[[], dict[str, float]], score_key: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Stage 1: backbone + teacher on the labelled ``train`` (the target's own loss); best dev
    ``score_key`` (higher is better) kept."""
    set_trainable(model, 1)
    backbone, _ = split_parameters(model)
    return run_stage(model, config, opts, backbone, lambda m, batch: m(batch), FINETUNE, train,
                     dev_fingerprint, evaluate, score_key, True, extra)


def distillation_loss_fn(model: nn.Module) -> LossFn:
    """Stage 2's loss for the trainer: the teacher is a fixed function (eval mode, no graph)."""
    target = exit_target(model)

    def loss_fn(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        model.embedding.eval()  # no dropout in what the students imitate
        model.encoder.eval()
        target.teacher.eval()
        real = batch["seg"] > 0
        with torch.no_grad():
            layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        return target.distill_loss(layers, real)

    return loss_fn


def distill(model: nn.Module, config: Config, opts: StageOptions, texts: StageData, dev_fingerprint: str,
            evaluate: Callable[[], dict[str, float]], extra: dict[str, Any]) -> dict[str, Any]:
    """Stage 2: the students learn KL(teacher || student) on ``texts`` (no labels needed); best dev
    ``distill_loss`` (lower is better) kept. Backbone and teacher must not change (checked)."""
    set_trainable(model, 2)
    backbone, students = split_parameters(model)
    frozen = {n: p.detach().clone() for n, p in backbone}
    result = run_stage(model, config, opts, students, distillation_loss_fn(model), DISTILL, texts,
                       dev_fingerprint, evaluate, "distill_loss", False, extra)
    for name, p in backbone:
        if not torch.equal(p.detach(), frozen[name]):
            raise AssertionError(f"{name} changed during self-distillation: backbone and teacher must stay frozen")
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    return result


@torch.no_grad()
def distill_loss_sum(model: nn.Module, layers: list[torch.Tensor], real: torch.Tensor,
                     teacher: torch.Tensor | None = None) -> tuple[float, int]:
    """One dev batch's distillation loss per student, summed over the rows the target scores, and
    the number of those rows: sum both over dev and divide for the dev ``distill_loss``.
    ``teacher``: the teacher's rows when the caller has them."""
    target = exit_target(model)
    if len(target.branches) < 2:
        return 0.0, 0
    if teacher is None:
        teacher = target.rows(target.teacher, layers[-1], real)
    loss = target.distill_loss(layers, real, teacher)["kl_per_student"]
    return float(loss) * len(teacher), len(teacher)
