"""What every early exit's speed sweep shares."""
from __future__ import annotations

from typing import Any, Sequence


def chosen_speed(rows: Sequence[dict[str, Any]], teacher_score: float, key: str = "accuracy",
                 tolerance: float = 0.01) -> dict[str, Any] | None:
    """The row with the largest speed whose ``key`` is within ``tolerance`` (1 point) of the full model's."""
    ok = [r for r in rows if r[key] >= teacher_score - tolerance]
    return max(ok, key=lambda r: r["speed"]) if ok else None
