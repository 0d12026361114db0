"""The sweep's table, its JSON report and the score vs speed-up plot, for every early exit."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from uer.utils.atomic import atomic_open


@dataclass(frozen=True)
class Column:
    """One column of the sweep table: a header, how to read a row's value, its format (``None``
    values print as ``-``) and a suffix (``x`` for speed-ups)."""

    header: str
    value: Callable[[dict[str, Any]], float | None]
    fmt: str
    suffix: str = ""

    def cell(self, row: dict[str, Any]) -> str:
        v = self.value(row)
        text = format(v, self.fmt) if v is not None else "-".rjust(len(format(1.0, self.fmt)))
        return text + self.suffix


def key(name: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    """A row's ``name`` (``None`` when absent or None), divided by ``scale``."""
    return lambda row: None if row.get(name) is None else row[name] / scale


SPEED_UPS = (  # every early exit's sweep has these
    Column("FLOPsx", key("flops_speedup"), "6.2f", "x"),
    Column("wall1x", key("wall_speedup_batch1"), "6.2f", "x"),
    Column("wallBx", key("wall_speedup_batched"), "6.2f", "x"),
)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], heading: Sequence[str] = (),
                 footer: Sequence[str] = ()) -> str:
    widths = [max(len(c.header), len(c.cell(rows[0])) if rows else 0) for c in columns]
    head = " ".join(c.header.rjust(w) for c, w in zip(columns, widths))
    lines = [*heading, head, "-" * len(head)]
    lines += [" ".join(c.cell(r).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join([*lines, *footer])


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def plot_tradeoff(path: str | Path, rows: Sequence[dict[str, Any]], reference: float, title: str,
                  metric: str, reference_label: str) -> Path:
    """``metric`` (accuracy, entity F1 ...) against speed-up (FLOPs and measured wall clock), one
    point per speed, with the full model's value and 1 point below it; written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, label, marker in (("flops_speedup", "FLOPs speed-up", "o"),
                                ("wall_speedup_batch1", "wall-clock, batch 1", "s"),
                                ("wall_speedup_batched", "wall-clock, batched", "^")):
        points = [(r[name], r[metric], r["speed"]) for r in rows if r.get(name) is not None]
        if not points:
            continue
        xs, ys, _ = zip(*points)
        ax.plot(xs, ys, marker=marker, label=label)
        if name == "flops_speedup":
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
    return path
