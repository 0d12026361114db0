"""Metrics, the speed table, the predictions file and the accuracy vs speed-up plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

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


def format_table(rows: Sequence[dict[str, Any]], teacher_accuracy: float | None = None) -> str:
    head = f"{'speed':>6} {'acc':>7} {'macroF1':>8} {'exit':>5} {'MFLOPs':>8} {'FLOPsx':>7} {'timedx':>7} {'wall1x':>7} {'wallBx':>7}"
    lines = []
    if teacher_accuracy is not None:
        lines.append(f"teacher accuracy (full model): {teacher_accuracy:.4f}")
    lines += [head, "-" * len(head)]

    def num(value, fmt):
        return format(value, fmt) if value is not None else "-".rjust(len(format(1.0, fmt)))

    for r in rows:
        lines.append(
            f"{r['speed']:>6.2f} {r['accuracy']:>7.4f} {r['macro_f1']:>8.4f} {r['mean_exit_layer']:>5.2f} "
            f"{num(r['flops_per_sample'] and r['flops_per_sample'] / 1e6, '8.2f')} {num(r['flops_speedup'], '6.2f')}x "
            f"{num(r.get('flops_speedup_timed'), '6.2f')}x "
            f"{num(r['wall_speedup_batch1'], '6.2f')}x {num(r['wall_speedup_batched'], '6.2f')}x"
        )
    lines.append("FLOPsx: all rows; timedx: FLOPs speed-up on the rows timed for wall1x (batch 1) and wallBx (batched)")
    return "\n".join(lines)


def write_predictions(path: str | Path, labels: Sequence[str], probs: torch.Tensor, exit_layer: torch.Tensor) -> None:
    """TSV ``label  probability  exit_layer``, one line per input row, in input order."""
    pred = probs.argmax(-1)
    top = probs.max(-1).values
    with atomic_open(path) as f:
        f.write("label\tprobability\texit_layer\n")
        for p, q, e in zip(pred.tolist(), top.tolist(), exit_layer.tolist()):
            f.write(f"{labels[p]}\t{q:.6f}\t{e}\n")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def plot_tradeoff(path: str | Path, rows: Sequence[dict[str, Any]], reference: float, title: str = "FastBERT",
                  metric: str = "accuracy", reference_label: str = "teacher") -> None:
    """``metric`` (accuracy, entity F1 ...) against speed-up (FLOPs and measured wall clock), one
    point per speed, with the full model's value and 1 point below it; written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for key, label, marker in (("flops_speedup", "FLOPs speed-up", "o"),
                               ("wall_speedup_batch1", "wall-clock, batch 1", "s"),
                               ("wall_speedup_batched", "wall-clock, batched", "^")):
        points = [(r[key], r[metric], r["speed"]) for r in rows if r.get(key) is not None]
        if not points:
            continue
        xs, ys, _ = zip(*points)
        ax.plot(xs, ys, marker=marker, label=label)
        if key == "flops_speedup":
            for x, y, s in points:
                ax.annotate(f"{s:g}", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
    ax.axhline(reference - 0.01, color="grey", linestyle=":", linewidth=1, label=f"{reference_label} - 1 point")
    ax.set_xlabel("speed-up vs full model (x)")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {metric} vs speed-up (labels: speed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
