"""The speed sweep: accuracy, exit layers and FLOPs for every speed from one full pass, then
measured wall-clock speed-ups (batch 1 and batched) against the full model.

Accuracy and exits come from every branch's output computed once (``EarlyExit.layer_probs``):
early exit at speed ``s`` returns exactly the branch output of the first layer whose entropy is
below ``s``. Wall clock is measured by really running early exit on a fixed subset (the first
``timing_samples`` rows): each batch best of ``repeats`` runs, the full model and every speed taking turns.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from uer.fastbert.data import Encoded, collate, length_sorted_batches
from uer.fastbert.flops import FlopModel
from uer.fastbert.inference import EarlyExit, exits_for_speeds
from uer.fastbert.policies import resolve
from uer.fastbert.report import classification_metrics


def policy_names() -> tuple[str, ...]:
    """The exit policies ``--exit_policy`` and ``FastBertClassifier.predict(policy=)`` accept:
    every name on the ``uer.fastbert.policies`` registry."""
    from uer.fastbert.policies import POLICIES

    return tuple(POLICIES.names())


def policy_kwargs(policy: str) -> dict[str, str]:
    """Keywords for ``EarlyExit.predict`` / ``exits_for_speeds``."""
    if policy not in policy_names():
        raise ValueError(f"policy {policy!r}: expected one of {', '.join(policy_names())}")
    return {"policy": policy}


def all_layer_probs(runner: EarlyExit, encoded: Encoded, pad_id: int, batch_size: int) -> torch.Tensor:
    """(N, layers, labels) in input order."""
    out = torch.empty(len(encoded), runner.layers_num, runner.target.labels_num)
    for index in length_sorted_batches(encoded.lengths(), batch_size):
        batch = collate(encoded, index, pad_id, runner.device)
        out[index] = runner.layer_probs(batch["src"], batch["seg"]).cpu()
    return out


def timing_batches(encoded: Encoded, index: Sequence[int], pad_id: int, batch_size: int,
                   device: torch.device | str = "cpu") -> list[dict[str, torch.Tensor]]:
    sub = Encoded([encoded.ids[i] for i in index], [encoded.segs[i] for i in index], None)
    return [collate(sub, b, pad_id, device) for b in length_sorted_batches(sub.lengths(), batch_size)]


def run_batch(runner: EarlyExit, batch: dict[str, torch.Tensor], speed: float | None, policy: str = "entropy") -> float:
    """Seconds for one batch; ``speed=None`` runs the full model (backbone + teacher)."""
    start = time.perf_counter()
    if speed is None:
        runner.full_model_probs(batch["src"], batch["seg"])
    else:
        runner.predict(batch["src"], batch["seg"], speed, **policy_kwargs(policy))
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)  # kernels run asynchronously: wait for them
    return time.perf_counter() - start


def measure_walls(runner: EarlyExit, batches: list[dict[str, torch.Tensor]], speeds: Sequence[float], repeats: int,
                  policy: str = "entropy") -> dict:
    """Seconds to run all ``batches`` with the full model (key None) and at each speed.

    Each batch is timed ``repeats`` times per configuration after one warm-up run and the best
    time counts: on a shared machine a slow spell then spoils one try, not the measurement. The
    configurations take turns batch by batch, so drifts hit them alike."""
    configs: list[float | None] = [None, *speeds]
    total = {c: 0.0 for c in configs}
    for batch in batches:
        for c in configs:
            run_batch(runner, batch, c, policy)  # warm-up: allocator, oneDNN primitives for this shape
            total[c] += min(run_batch(runner, batch, c, policy) for _ in range(repeats))
    return total


def sweep(
    runner: EarlyExit, encoded: Encoded, pad_id: int, speeds: Sequence[float], eval_batch_size: int = 64,
    timing_samples: int = 256, batch_size: int = 32, repeats: int = 2, measure: bool = True, policy: str = "entropy",
) -> dict[str, Any]:
    """Rows of the speed table, as in the ``--report_path`` JSON, plus the per-speed exits.

    ``policy``: the exit rule (:func:`policy_names`); ``speed`` is its threshold knob."""
    if encoded.labels is None:
        raise ValueError("the sweep needs labels")
    if measure and (timing_samples < 1 or batch_size < 1):
        raise ValueError(f"timing_samples {timing_samples} and batch_size {batch_size} must be >= 1")
    labels_num = runner.target.labels_num
    gold = torch.tensor(encoded.labels)
    layer_probs = all_layer_probs(runner, encoded, pad_id, eval_batch_size)
    exits = exits_for_speeds(layer_probs, speeds, **policy_kwargs(policy))
    teacher = classification_metrics(layer_probs[:, -1].argmax(-1), gold, labels_num)
    try:
        flop_model = FlopModel.of(runner.model)
    except NotImplementedError:
        flop_model = None
    lengths = torch.tensor(encoded.lengths(), dtype=torch.float64)
    full_flops = float(flop_model.full(lengths).mean()) if flop_model else None

    walls: dict[str, dict[float | None, float]] = {"1": {}, "b": {}}
    timed = min(timing_samples, len(encoded)) if measure else 0
    if measure:
        index = list(range(timed))
        singles = timing_batches(encoded, index, pad_id, 1, runner.device)
        batched = timing_batches(encoded, index, pad_id, batch_size, runner.device)
        walls = {"1": measure_walls(runner, singles, speeds, repeats, policy),
                 "b": measure_walls(runner, batched, speeds, repeats, policy)}

    rows = []
    for speed, result in zip(speeds, exits):
        metrics = classification_metrics(result.probs.argmax(-1), gold, labels_num)
        full_here = resolve(policy_kwargs(policy)["policy"]).never_early(speed)  # predict runs the full model
        flops = (full_flops if full_here else float(flop_model.early_exit(lengths, result.exit_layer.double()).mean())) \
            if flop_model else None
        rows.append({
            "speed": float(speed),
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "mean_exit_layer": float(result.exit_layer.double().mean()),
            "flops_per_sample": flops,
            "flops_speedup": full_flops / flops if flop_model else None,
            # the same ratio on the rows whose wall clock was measured: what the wall columns compare with
            "flops_speedup_timed": 1.0 if full_here and flop_model and timed else
            (float(flop_model.full(lengths[:timed]).mean())
             / float(flop_model.early_exit(lengths[:timed], result.exit_layer[:timed].double()).mean()))
            if flop_model and timed else None,
            "wall_speedup_batch1": walls["1"][None] / walls["1"][speed] if measure else None,
            "wall_speedup_batched": walls["b"][None] / walls["b"][speed] if measure else None,
            "confusion_matrix": metrics["confusion_matrix"],
        })
    return {
        "teacher": teacher, "rows": rows, "exits": exits, "full_flops_per_sample": full_flops,
        "wall_seconds": {"batch1": {str(k): v for k, v in walls["1"].items()},
                         f"batch{batch_size}": {str(k): v for k, v in walls["b"].items()}},
        "timing_samples": timed, "backend": runner.backend,
    }


def chosen_speed(rows: Sequence[dict[str, Any]], teacher_accuracy: float, tolerance: float = 0.01) -> dict[str, Any] | None:
    """The largest speed whose accuracy is within ``tolerance`` of the teacher's."""
    ok = [r for r in rows if r["accuracy"] >= teacher_accuracy - tolerance]
    return max(ok, key=lambda r: r["speed"]) if ok else None
