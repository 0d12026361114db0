"""The tagger's task pieces for the shared training stages (:mod:`uer.exit.training`).

Stage 1 fine-tunes backbone + teacher (the last layer's branch) with token cross-entropy, keeping
the weights with the best teacher entity F1 on dev; stage 2 distils per token and keeps the
lowest dev distillation loss. Both stages, their resume and their checks are the shared ones.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from uer.config import Config
from uer.exit import training as stages
from uer.data.loader import length_sorted_batches
from uer.exit.targets import exit_target
from uer.exit.training import StageData, StageOptions, distill_loss_sum
from uer.tagging.data import IGNORE, Chunks, assemble, collate, pick
from uer.tagging.metrics import entity_scores


@torch.no_grad()
def dev_scores(model: nn.Module, dev: Chunks, gold: list[list[str]], pad_id: int, batch_size: int,
               id2label: Sequence[str]) -> dict[str, float]:
    """The full model's (backbone + teacher) entity F1 / precision / recall and the per-student
    distillation loss per token on dev, from one pass over it."""
    was_training = model.training
    model.eval()
    target = exit_target(model)
    device = next(model.parameters()).device
    kl_sum, n = 0.0, 0
    tags: list[list[str]] = [[] for _ in range(len(dev))]
    for index in length_sorted_batches(dev.lengths(), batch_size):
        batch = collate(dev, index, pad_id, device)
        layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        loss, rows = distill_loss_sum(model, layers, batch["seg"] > 0)
        kl_sum, n = kl_sum + loss, n + rows
        pred = target.teacher(layers[-1]).argmax(-1).cpu()
        for j, r in enumerate(index):
            tags[r] = [id2label[k] for k in pick(pred[j].tolist(), dev.units(r))]
    scores = entity_scores(gold, assemble(dev, tags))
    model.train(was_training)
    return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
            "distill_loss": kl_sum / max(n, 1)}


def fingerprint(chunks: Chunks) -> str:
    return stages.fingerprint(len(chunks), (chunks.ids, chunks.tags))


def tagged_tokens(batch) -> int:  # stage 1's loss is a mean over the tagged tokens
    return int((batch["tgt_tag"] != IGNORE).sum())


def real_tokens(batch) -> int:  # stage 2's over every real token ([CLS] included)
    return int((batch["seg"] > 0).sum())


def stage_data(chunks: Chunks, pad_id: int) -> StageData:
    count = real_tokens if chunks.tags is None else tagged_tokens
    return StageData(chunks.lengths(), lambda index: collate(chunks, index, pad_id), fingerprint(chunks), count)


def finetune(model, config: Config, train: Chunks, dev: Chunks, gold, id2label, pad_id: int, opts: StageOptions,
             extra: dict[str, Any]) -> dict[str, Any]:
    """Stage 1: backbone + teacher on the tagged ``train``; best dev entity F1 kept."""
    if train.tags is None:
        raise ValueError("stage 1 needs tagged training rows")
    evaluate = lambda: dev_scores(model, dev, gold, pad_id, opts.eval_batch_size, id2label)  # noqa: E731
    return stages.finetune(model, config, opts, stage_data(train, pad_id), fingerprint(dev), evaluate, "f1", extra)


def distill(model, config: Config, texts: Chunks, dev: Chunks, gold, id2label, pad_id: int, opts: StageOptions,
            extra: dict[str, Any]) -> dict[str, Any]:
    """Stage 2: students learn KL(teacher || student) per token on ``texts`` (tags unused)."""
    evaluate = lambda: dev_scores(model, dev, gold, pad_id, opts.eval_batch_size, id2label)  # noqa: E731
    return stages.distill(model, config, opts, stage_data(texts.without_tags(), pad_id), fingerprint(dev), evaluate, extra)
