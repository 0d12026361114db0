"""The tagger's two training stages on :class:`uer.trainer.Trainer`, as FastBERT's.

Stage 1 fine-tunes backbone + teacher (the last layer's branch) with token cross-entropy; the
students are frozen. Stage 2 freezes backbone + teacher (checked: they must not change) and
trains the students on KL(teacher || student) per token; no labels needed. Each stage keeps its
best weights by a dev criterion (stage 1: teacher entity F1, higher is better; stage 2: the dev
distillation loss, lower is better) in ``trainer.user_state``, so a resumed run chooses alike.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from uer.checkpoint import load_state, read_checkpoint, save_checkpoint
from uer.config import Config
from uer.fastbert.data import length_sorted_batches
from uer.fastbert.training import StageOptions, stage_trainer
from uer.tagging.data import Chunks, assemble, collate
from uer.tagging.inference import token_exit_target
from uer.tagging.metrics import entity_scores
from uer.trainer import Trainer


def _split(model: nn.Module) -> tuple[list, list]:
    students = {id(p) for s in token_exit_target(model).students() for p in s.parameters()}
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if id(p) not in students], [(n, p) for n, p in named if id(p) in students]


def set_trainable(model: nn.Module, stage: int) -> None:
    backbone, students = _split(model)
    for _, p in backbone:
        p.requires_grad_(stage == 1)
    for _, p in students:
        p.requires_grad_(stage == 2)


def teacher_tags(model: nn.Module, chunks: Chunks, pad_id: int, batch_size: int, id2label: Sequence[str]) -> list[list[str]]:
    """The full model's tags (backbone + teacher), per sentence."""
    from uer.tagging.inference import TokenExit

    runner = TokenExit(model, runtime="eager")  # per dev evaluation: nothing to pack or measure
    rows: list[list[str]] = [[] for _ in range(len(chunks))]
    for index in length_sorted_batches(chunks.lengths(), batch_size):
        batch = collate(chunks, index, pad_id, runner.device)
        pred = runner.full_model(batch["src"], batch["seg"]).argmax(-1).cpu()
        for j, r in enumerate(index):
            n = len(chunks.ids[r])
            rows[r] = [id2label[k] for k in pred[j, 1:n].tolist()]
    return assemble(chunks, rows)


@torch.no_grad()
def dev_scores(model: nn.Module, dev: Chunks, gold: list[list[str]], pad_id: int, batch_size: int,
               id2label: Sequence[str]) -> dict[str, float]:
    was_training = model.training
    model.eval()
    target = token_exit_target(model)
    kl_sum, n = 0.0, 0
    if len(target.branches) > 1:
        for index in length_sorted_batches(dev.lengths(), batch_size):
            batch = collate(dev, index, pad_id, next(model.parameters()).device)
            layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
            real = batch["seg"] > 0
            kl_sum += float(target.distill_loss(layers, real)["kl_per_student"]) * int(real.sum())
            n += int(real.sum())
    scores = entity_scores(gold, teacher_tags(model, dev, pad_id, batch_size, id2label))
    model.train(was_training)
    return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
            "distill_loss": kl_sum / max(n, 1)}


def unlabelled(chunks: Chunks) -> Chunks:
    """The rows without their tags: what stage 2 trains on (and what its resume signature names)."""
    return Chunks(chunks.ids, chunks.segs, None, chunks.sentence, chunks.offset, chunks.sentences_num)


def fingerprint(chunks: Chunks) -> str:
    digest = hashlib.sha1()
    digest.update(repr((chunks.ids, chunks.tags)).encode())
    return f"{len(chunks)} rows, sha1 {digest.hexdigest()[:16]}"


def _run_stage(model, config: Config, train: Chunks, dev: Chunks, gold: list[list[str]], id2label, pad_id: int,
               opts: StageOptions, params, loss_fn: Callable, score_key: str, higher: bool, desc: str,
               extra: dict[str, Any]) -> dict[str, Any]:
    trainer, loader, per_epoch = stage_trainer(
        model, config, opts, params, loss_fn, desc, train.lengths(),
        lambda index: collate(train, index, pad_id), fingerprint(train), fingerprint(dev))
    total = per_epoch * opts.epochs

    def on_step(tr: Trainer) -> None:
        if tr.step % per_epoch:
            return
        scores = dev_scores(model, dev, gold, pad_id, opts.eval_batch_size, id2label)
        epoch = tr.step // per_epoch
        tr.user_state["dev"].append({"epoch": epoch, **scores})
        best, value = tr.user_state["best"], scores[score_key]
        message = f"{desc} epoch {epoch}: dev " + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
        if best is None or (value > best if higher else value < best):
            tr.user_state["best"], tr.user_state["best_epoch"] = value, epoch
            save_checkpoint(opts.best_path, model, config, **extra, dev=scores, epoch=epoch)
            message += " (best so far, saved)"
        print(message, flush=True)

    trainer.fit(loader, total, on_step=on_step)
    best = read_checkpoint(opts.best_path)
    load_state(model, best["model"], opts.best_path, config.source)
    return {"best": trainer.user_state["best"], "best_epoch": trainer.user_state["best_epoch"],
            "dev": trainer.user_state["dev"], "steps": total}


def finetune(model, config, train: Chunks, dev: Chunks, gold, id2label, pad_id, opts: StageOptions, extra) -> dict[str, Any]:
    """Stage 1: backbone + teacher on the labelled ``train``; best dev entity F1 kept."""
    if train.tags is None:
        raise ValueError("stage 1 needs tagged training rows")
    set_trainable(model, 1)
    backbone, _ = _split(model)
    return _run_stage(model, config, train, dev, gold, id2label, pad_id, opts, backbone,
                      loss_fn=lambda m, batch: m(batch), score_key="f1", higher=True, desc="stage 1 fine-tune", extra=extra)


def distill(model, config, texts: Chunks, dev: Chunks, gold, id2label, pad_id, opts: StageOptions, extra) -> dict[str, Any]:
    """Stage 2: students learn KL(teacher || student) on ``texts`` (tags unused); backbone frozen."""
    set_trainable(model, 2)
    backbone, students = _split(model)
    frozen = {n: p.detach().clone() for n, p in backbone}
    target = token_exit_target(model)

    def loss_fn(wrapped, batch):
        model.embedding.eval()  # what the students imitate has no dropout
        model.encoder.eval()
        target.teacher.eval()
        real = batch["seg"] > 0
        with torch.no_grad():
            layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        return target.distill_loss(layers, real)

    result = _run_stage(model, config, unlabelled(texts), dev, gold, id2label, pad_id, opts, students, loss_fn,
                        score_key="distill_loss", higher=False, desc="stage 2 self-distil", extra=extra)
    for name, p in backbone:
        if not torch.equal(p.detach(), frozen[name]):
            raise AssertionError(f"{name} changed during self-distillation: backbone and teacher must stay frozen")
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    return result
