"""Token exit's columns of the speed table and its predictions file (the input's own format)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from uer.exit.report import SPEED_UPS, Column, key
from uer.exit.report import format_table as table
from uer.utils.atomic import atomic_open

COLUMNS = (
    Column("speed", key("speed"), "6g"), Column("P", key("precision"), "7.4f"), Column("R", key("recall"), "7.4f"),
    Column("F1", key("f1"), "7.4f"), Column("exit", key("mean_exit_layer"), "5.2f"),
    Column("run", key("mean_layers_run"), "5.2f"), Column("MFLOPs", key("flops_per_sentence", 1e6), "8.3f"), *SPEED_UPS,
)


def format_table(rows: Sequence[dict[str, Any]], teacher_f1: float) -> str:
    """exit: mean exit layer per character; run: mean layers a row runs (its deepest token)."""
    return table(rows, COLUMNS, [f"full model entity F1: {teacher_f1:.4f}"])


def write_predictions(path: Path, chars: list[list[str]], tags: list[list[str]], data_format: str = "tsv") -> None:
    """The input's format: ``text_a<TAB>label`` with a header, space-separated (``tsv``), or one
    ``word tag`` per line with a blank line after each sentence (``conll``)."""
    with atomic_open(path) as f:
        if data_format == "conll":
            for c, t in zip(chars, tags):
                f.write("".join(f"{w} {g}\n" for w, g in zip(c, t)) + "\n")
            return
        f.write("text_a\tlabel\n")
        for c, t in zip(chars, tags):
            f.write(f"{' '.join(c)}\t{' '.join(t)}\n")
