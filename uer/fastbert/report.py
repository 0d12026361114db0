"""Sentence exit's metrics, its columns of the speed table and its predictions file."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from uer.exit.report import SPEED_UPS, Column, key
from uer.exit.report import format_table as table
from uer.utils.atomic import atomic_open


def confusion_matrix(pred: torch.Tensor, gold: torch.Tensor, labels_num: int) -> torch.Tensor:
    """(labels, labels): row = gold label, column = prediction."""
    return torch.bincount(gold * labels_num + pred, minlength=labels_num * labels_num).view(labels_num, labels_num)


def classification_metrics(pred: torch.Tensor, gold: torch.Tensor, labels_num: int) -> dict[str, Any]:
    cm = confusion_matrix(pred, gold, labels_num).double()
    tp = cm.diagonal()
    precision = tp / cm.sum(0).clamp_min(1)
    recall = tp / cm.sum(1).clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), torch.zeros_like(tp))
    return {
        "accuracy": float(tp.sum() / cm.sum().clamp_min(1)),
        "macro_f1": float(f1.mean()),
        "confusion_matrix": cm.long().tolist(),
    }


COLUMNS = (
    Column("speed", key("speed"), "6.2f"), Column("acc", key("accuracy"), "7.4f"), Column("macroF1", key("macro_f1"), "8.4f"),
    Column("exit", key("mean_exit_layer"), "5.2f"), Column("MFLOPs", key("flops_per_sample", 1e6), "8.2f"),
    SPEED_UPS[0], Column("timedx", key("flops_speedup_timed"), "6.2f", "x"), *SPEED_UPS[1:],
)


def format_table(rows: Sequence[dict[str, Any]], teacher_accuracy: float | None = None) -> str:
    heading = [] if teacher_accuracy is None else [f"teacher accuracy (full model): {teacher_accuracy:.4f}"]
    return table(rows, COLUMNS, heading,
                 ["FLOPsx: all rows; timedx: FLOPs speed-up on the rows timed for wall1x (batch 1) and wallBx (batched)"])


def write_predictions(path: str | Path, labels: Sequence[str], probs: torch.Tensor, exit_layer: torch.Tensor) -> None:
    """TSV ``label  probability  exit_layer``, one line per input row, in input order."""
    pred = probs.argmax(-1)
    top = probs.max(-1).values
    with atomic_open(path) as f:
        f.write("label\tprobability\texit_layer\n")
        for p, q, e in zip(pred.tolist(), top.tolist(), exit_layer.tolist()):
            f.write(f"{labels[p]}\t{q:.6f}\t{e}\n")
