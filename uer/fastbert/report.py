"""Sentence exit's metrics, its columns of the speed table and its predictions file, for each
task (``FastBertTargetConfig.task``): classification, multi_label, regression."""
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


def multi_label_metrics(pred: torch.Tensor, gold: torch.Tensor) -> dict[str, Any]:
    """(N, labels) bool predictions and 0/1 gold -> micro-F1 (every label decision pooled),
    macro-F1 (the mean of the labels' F1; a label never predicted nor present scores 0) and exact
    match (the share of rows whose whole label set is right)."""
    pred, gold = pred.bool(), gold > 0.5
    tp = (pred & gold).sum(0).double()
    fp = (pred & ~gold).sum(0).double()
    fn = (~pred & gold).sum(0).double()

    def f1(tp, fp, fn):
        return torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.zeros_like(tp))

    return {"micro_f1": float(f1(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(f1(tp, fp, fn).mean()),
            "exact_match": float((pred == gold).all(-1).double().mean()) if len(pred) else 0.0,
            "per_label_f1": f1(tp, fp, fn).tolist()}


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing the mean of their ranks (Spearman's convention)."""
    order = x.argsort()
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(mean_rank[inverse])
    ranks[order] = mean_rank[inverse]
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r; 0 when either side is constant (no linear relation can be read)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    norm = float(a.norm() * b.norm())
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def regression_metrics(pred: torch.Tensor, gold: torch.Tensor) -> dict[str, Any]:
    """(N,) predictions and gold values (in the labels' units) -> Pearson, Spearman, RMSE."""
    pred, gold = pred.double().flatten(), gold.double().flatten()
    return {"pearson": pearson(pred, gold), "spearman": pearson(_ranks(pred), _ranks(gold)),
            "rmse": float(((pred - gold) ** 2).mean().sqrt()) if len(pred) else 0.0}


COLUMNS = (
    Column("speed", key("speed"), "6.2f"), Column("acc", key("accuracy"), "7.4f"), Column("macroF1", key("macro_f1"), "8.4f"),
    Column("exit", key("mean_exit_layer"), "5.2f"), Column("MFLOPs", key("flops_per_sample", 1e6), "8.2f"),
    SPEED_UPS[0], Column("timedx", key("flops_speedup_timed"), "6.2f", "x"), *SPEED_UPS[1:],
)


_COST = (Column("exit", key("mean_exit_layer"), "5.2f"), Column("MFLOPs", key("flops_per_sample", 1e6), "8.2f"),
         SPEED_UPS[0], Column("timedx", key("flops_speedup_timed"), "6.2f", "x"), *SPEED_UPS[1:])
TASK_COLUMNS = {
    "classification": COLUMNS,
    "multi_label": (Column("speed", key("speed"), "6.2f"), Column("microF1", key("micro_f1"), "8.4f"),
                    Column("macroF1", key("macro_f1"), "8.4f"), Column("exact", key("exact_match"), "7.4f"), *_COST),
    "regression": (Column("speed", key("speed"), "6.2f"), Column("pearson", key("pearson"), "8.4f"),
                   Column("spearman", key("spearman"), "8.4f"), Column("rmse", key("rmse"), "9.4f"), *_COST),
}
SCORE = {"classification": "accuracy", "multi_label": "micro_f1", "regression": "pearson"}  # what picks the speed


def format_table(rows: Sequence[dict[str, Any]], teacher_accuracy: float | None = None, task: str = "classification") -> str:
    """``teacher_accuracy``: the full model's score of the task (:data:`SCORE`: accuracy, micro-F1, Pearson)."""
    heading = [] if teacher_accuracy is None else [f"teacher {SCORE[task].replace('_', '-')} (full model): {teacher_accuracy:.4f}"]
    return table(rows, TASK_COLUMNS[task], heading,
                 ["FLOPsx: all rows; timedx: FLOPs speed-up on the rows timed for wall1x (batch 1) and wallBx (batched)"])


def int8_verdict(chosen: dict[str, Any] | None, int8_walls: dict[str, dict[str, float]],
                 fp32_walls: dict[str, dict[str, float]], fp32_teacher: float, score: str = "accuracy") -> dict[str, Any]:
    """Whether int8 should replace fp32, from one run's two sweeps: ``{"keep": "int8" | "fp32", "why": one line,
    "speed", "wall_ratio": {batch: int8 wall / fp32 wall}}``.

    int8 is recommended only where its largest speed within 1 point of the *fp32* teacher
    (``chosen``, ``uer.exit.sweep.chosen_speed`` of the int8 rows against ``fp32_teacher``) is also
    no slower than fp32 at that same speed, at every batch size both sweeps timed (``int8_walls`` /
    ``fp32_walls``: the reports' ``wall_seconds``, timed in the same run on the same rows). Anything
    else keeps fp32 and says why: the score, the time, or no time measured."""
    name = score.replace("_", "-")
    if chosen is None:
        return {"keep": "fp32", "speed": None, "wall_ratio": {},
                "why": f"no int8 speed keeps the {name} within 1 point of the fp32 teacher's {fp32_teacher:.4f}"}
    speed = chosen["speed"]
    where = f"int8 at speed {speed:g} ({name} {chosen[score]:.4f}, fp32 teacher {fp32_teacher:.4f})"
    key = str(float(speed))
    ratio = {batch: walls[key] / fp32_walls[batch][key] for batch, walls in int8_walls.items()
             if key in walls and key in fp32_walls.get(batch, {}) and fp32_walls[batch][key] > 0}
    if not ratio:
        return {"keep": "fp32", "speed": speed, "wall_ratio": ratio,
                "why": f"{where} was not timed beside fp32 (--timing_samples 0?): whether it is faster is unknown"}
    said = ", ".join(f"{batch.replace('batch', 'batch ')} x{r:.2f}" for batch, r in ratio.items())
    slower = [batch for batch, r in ratio.items() if r > 1]
    if slower:
        return {"keep": "fp32", "speed": speed, "wall_ratio": ratio,
                "why": f"{where} is slower than fp32 at the same speed (int8 wall / fp32 wall: {said})"}
    return {"keep": "int8", "speed": speed, "wall_ratio": ratio,
            "why": f"{where} is within 1 point of the fp32 teacher and no slower than fp32 at that speed "
                   f"(int8 wall / fp32 wall: {said})"}


def write_predictions(path: str | Path, labels: Sequence[str], probs: torch.Tensor, exit_layer: torch.Tensor) -> None:
    """TSV ``label  probability  exit_layer``, one line per input row, in input order."""
    pred = probs.argmax(-1)
    top = probs.max(-1).values
    with atomic_open(path) as f:
        f.write("label\tprobability\texit_layer\n")
        for p, q, e in zip(pred.tolist(), top.tolist(), exit_layer.tolist()):
            f.write(f"{labels[p]}\t{q:.6f}\t{e}\n")


def write_multi_label_predictions(path: str | Path, labels: Sequence[str], probs: torch.Tensor, exit_layer: torch.Tensor) -> None:
    """TSV ``labels  probabilities  exit_layer``: the predicted labels (comma-separated, empty for
    none: the input's format), every label's probability (comma-separated, in ``labels`` order)."""
    with atomic_open(path) as f:
        f.write("labels\tprobabilities\texit_layer\n")
        for row, e in zip(probs.tolist(), exit_layer.tolist()):
            chosen = ",".join(label for label, p in zip(labels, row) if p > 0.5)
            f.write(f"{chosen}\t{','.join(f'{p:.6f}' for p in row)}\t{e}\n")


def write_regression_predictions(path: str | Path, values: torch.Tensor, exit_layer: torch.Tensor) -> None:
    """TSV ``value  exit_layer``: the prediction in the labels' units."""
    with atomic_open(path) as f:
        f.write("value\texit_layer\n")
        for v, e in zip(values.flatten().tolist(), exit_layer.tolist()):
            f.write(f"{v:.10g}\t{e}\n")
