"""What both speed sweeps share: wall-clock timing against the full model, and the chosen speed.

    walls = measure_walls(lambda batch, speed: ..., batches, speeds, repeats=2)   # {None: s, 0.1: s, ...}
    wall_seconds({"1": walls_1, "b": walls_b}, batch_size=32)                   # the report's dict
    chosen_speed(rows, teacher_score, key="f1")                                  # the row to deploy, or None

A configuration is ``None`` (the full model: backbone + teacher) or a speed. Each batch is timed
``repeats`` times per configuration after one warm-up run and the best time counts: on a shared
machine a slow spell then spoils one try, not the measurement. The configurations take turns
batch by batch, so drifts hit them alike.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

Config = float | None  # a speed, or None for the full model


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds one call of ``fn`` takes (on CUDA, until its kernels have finished)."""
    device = torch.device(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: wait for them
    return time.perf_counter() - start


def measure_walls(run: Callable[[Any, Config], object], batches: Sequence[Any], speeds: Sequence[float],
                  repeats: int, device: torch.device | str = "cpu") -> dict[Config, float]:
    """Seconds to run all ``batches`` with the full model (key None) and at each speed:
    ``run(batch, config)`` runs one batch."""
    configs: list[Config] = [None, *speeds]
    total = {c: 0.0 for c in configs}
    for batch in batches:
        for c in configs:
            run(batch, c)  # warm-up: allocator, oneDNN primitives for this shape
            total[c] += min(timed(lambda: run(batch, c), device) for _ in range(repeats))
    return total


def wall_speedup(walls: dict[Config, float] | None, speed: float) -> float | None:
    """The full model's seconds over those at ``speed`` (None when nothing was timed)."""
    return walls[None] / walls[speed] if walls else None


def wall_seconds(walls: dict[str, dict[Config, float]], batch_size: int) -> dict[str, dict[str, float]]:
    """``{"1": walls at batch 1, "b": walls batched}`` -> the report's ``{"batch1": ..., "batch32": ...}``
    with the configurations as strings ("None" = the full model)."""
    return {"batch1": {str(k): v for k, v in walls.get("1", {}).items()},
            f"batch{batch_size}": {str(k): v for k, v in walls.get("b", {}).items()}}


def chosen_speed(rows: Sequence[dict[str, Any]], teacher_score: float, key: str = "accuracy",
                 tolerance: float = 0.01) -> dict[str, Any] | None:
    """The largest speed whose ``key`` score (``accuracy``, ``f1``, ...) is within ``tolerance`` of
    the full model's ``teacher_score``; None when no row is."""
    ok = [r for r in rows if r[key] >= teacher_score - tolerance]
    return max(ok, key=lambda r: r["speed"]) if ok else None
