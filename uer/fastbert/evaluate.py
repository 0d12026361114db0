"""The speed sweep: accuracy, exit layers and FLOPs for every speed from one full pass, then
measured wall-clock speed-ups (batch 1 and batched) against the full model.

Accuracy and exits come from every branch's output computed once (``EarlyExit.layer_probs``):
early exit at speed ``s`` returns exactly the branch output of the first layer whose entropy is
below ``s``; at a speed where the runner's exit plan runs the full model (:func:`plan_exits`),
the teacher's output. Wall clock: ``predict`` really run on the first ``timing_samples`` rows,
timed by :func:`uer.exit.sweep.measure_walls`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from uer.exit.checks import policy_spec
from uer.exit.pays import ExitPlan, ExitProfile, make_plan
from uer.exit.policies import DEFAULT, resolve
from uer.exit.sweep import measure_walls, wall_seconds, wall_speedup
from uer.data.loader import length_sorted_batches
from uer.fastbert.data import Encoded, collate
from uer.fastbert.flops import FlopModel
from uer.fastbert.inference import EarlyExit, Policy, exits_for_speeds, measure_costs
from uer.fastbert.report import classification_metrics, multi_label_metrics, regression_metrics


def all_layer_probs(runner: EarlyExit, encoded: Encoded, pad_id: int, batch_size: int) -> torch.Tensor:
    """(N, layers, labels) in input order."""
    out = torch.empty(len(encoded), runner.layers_num, runner.target.labels_num)
    for index in length_sorted_batches(encoded.lengths(), batch_size):
        batch = collate(encoded, index, pad_id, runner.device)
        out[index] = runner.layer_probs(batch["src"], batch["seg"]).cpu()
    return out


PLAN_SPEEDS = tuple(k / 10 for k in range(11))  # the speeds a plan is made at, whatever the run sweeps


def plan_exits(runner: EarlyExit, encoded: Encoded, pad_id: int, policy: Policy = DEFAULT,
               eval_batch_size: int = 64) -> ExitPlan:
    """The exit plan a trained model keeps (:class:`uer.exit.pays.ExitPlan`): the exits ``policy``
    makes on ``encoded`` (held-out rows: the dev set) at :data:`PLAN_SPEEDS`, and ``runner``'s step
    costs measured here. ``runner`` uses it from now on."""
    speeds = list(PLAN_SPEEDS)
    exits = exits_for_speeds(all_layer_probs(runner, encoded, pad_id, eval_batch_size), speeds, policy)
    profile = ExitProfile.of([r.exit_layer for r in exits], speeds, runner.layers_num, policy_spec(policy))
    runner.use_plan(make_plan(profile, measure_costs(runner), runner.where()))
    return runner.exit_plan


def task_metrics(task: str, outputs: torch.Tensor, gold: torch.Tensor, scale: tuple[float, float] = (0.0, 1.0)
                 ) -> dict[str, Any]:
    """The scores of (N, labels) outputs (``FastBertTarget.activation``) against the encoded labels.

    ``scale``: regression's ``(mean, std)`` of the training targets: predictions and labels are
    scored in the labels' own units (RMSE in years, not in standard deviations)."""
    if task == "multi_label":
        return multi_label_metrics(outputs > 0.5, gold)
    if task == "regression":
        mean, std = scale
        return regression_metrics(outputs[:, 0].double() * std + mean, gold.double() * std + mean)
    return classification_metrics(outputs.argmax(-1), gold, outputs.shape[-1])


def sweep(
    runner: EarlyExit, encoded: Encoded, pad_id: int, speeds: Sequence[float], eval_batch_size: int = 64,
    timing_samples: int = 256, batch_size: int = 32, repeats: int = 2, measure: bool = True, policy: Policy = DEFAULT,
    scale: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Rows of the speed table, as in the ``--report_path`` JSON, plus the per-speed exits.

    ``policy``: the exit rule (a name of ``uer.exit.policies.policy_names()``, a ``{"name": ...}``
    spec or a policy object); ``speed`` is its threshold knob. The scores follow the model's task
    (:func:`task_metrics`; ``scale``: regression's training mean and std)."""
    if encoded.labels is None:
        raise ValueError("the sweep needs labels")
    if measure and (timing_samples < 1 or batch_size < 1):
        raise ValueError(f"timing_samples {timing_samples} and batch_size {batch_size} must be >= 1")
    task = runner.target.task
    gold = torch.tensor(encoded.labels)
    layer_probs = all_layer_probs(runner, encoded, pad_id, eval_batch_size)
    rule = resolve(policy)
    exits = exits_for_speeds(layer_probs, speeds, rule, runner=runner)  # the full model where the runner runs it
    teacher = task_metrics(task, layer_probs[:, -1], gold, scale)
    flop_model = FlopModel.of(runner.model)  # None: no count for this encoder ("-" in the table)
    lengths = torch.tensor(encoded.lengths(), dtype=torch.float64)
    full_flops = float(flop_model.full(lengths).mean()) if flop_model else None

    walls: dict[str, dict[float | None, float]] = {}
    timed = min(timing_samples, len(encoded)) if measure else 0
    if measure:
        sub = Encoded(encoded.ids[:timed], encoded.segs[:timed], None)

        def run(batch: dict[str, torch.Tensor], speed: float | None) -> None:  # None: the full model
            if speed is None:
                runner.full_model_probs(batch["src"], batch["seg"])
            else:
                runner.predict(batch["src"], batch["seg"], speed, policy=rule)

        walls = {size: measure_walls(run, [collate(sub, b, pad_id, runner.device)
                                           for b in length_sorted_batches(sub.lengths(), n)], speeds, repeats, runner.device)
                 for size, n in (("1", 1), ("b", batch_size))}

    rows = []
    for speed, result in zip(speeds, exits):
        metrics = task_metrics(task, result.probs, gold, scale)
        full_here = not runner.plan(speed, rule).step  # predict runs the full model
        flops = (full_flops if full_here else float(flop_model.early_exit(lengths, result.exit_layer.double()).mean())) \
            if flop_model else None
        scores = {k: v for k, v in metrics.items() if k not in ("confusion_matrix", "per_label_f1")}
        rows.append({
            "speed": float(speed),
            **scores,  # accuracy, macro_f1 | micro_f1, macro_f1, exact_match | pearson, spearman, rmse
            "mean_exit_layer": float(result.exit_layer.double().mean()),
            "flops_per_sample": flops,
            "flops_speedup": full_flops / flops if flop_model else None,
            # the same ratio on the rows whose wall clock was measured: what the wall columns compare with
            "flops_speedup_timed": 1.0 if full_here and flop_model and timed else
            (float(flop_model.full(lengths[:timed]).mean())
             / float(flop_model.early_exit(lengths[:timed], result.exit_layer[:timed].double()).mean()))
            if flop_model and timed else None,
            "wall_speedup_batch1": wall_speedup(walls.get("1"), speed),
            "wall_speedup_batched": wall_speedup(walls.get("b"), speed),
            **{k: metrics[k] for k in ("confusion_matrix", "per_label_f1") if k in metrics},
        })
    return {
        "teacher": teacher, "rows": rows, "exits": exits, "full_flops_per_sample": full_flops,
        "wall_seconds": wall_seconds(walls, batch_size),
        "timing_samples": timed, "backend": runner.name, "runtime": runner.name,
    }
