"""bench/finetune_rate.py's pure parts: the rates it sweeps around are run_fastbert.py's own, and
its table picks the rate on dev, never on test."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_the_sweep_is_centred_on_what_run_fastbert_picks():
    from bench.finetune_rate import rule_rates
    from uer.recipe import DISTILL_RATIO, finetune_learning_rate

    lr, distill, size = rule_rates(ROOT / "models" / "bert" / "minilm_l6_h384.yaml")
    assert lr == finetune_learning_rate(384, 6) == 1.4e-4 and distill == pytest.approx(DISTILL_RATIO * lr)
    assert size == "hidden 384 x 6 layers"


def test_the_table_chooses_on_dev_and_marks_the_rule():
    from bench.finetune_rate import table

    def run(m, seed, dev, test):
        return {"multiplier": m, "seed": seed, "dev_accuracy": dev, "teacher_accuracy": test}

    runs = [run(0.5, 1, 0.70, 0.90), run(0.5, 2, 0.72, 0.90),  # best on test, worst on dev
            run(1.0, 1, 0.80, 0.60), run(1.0, 2, 0.78, 0.62),
            run(2.0, 1, 0.79, 0.70), run(2.0, 2, 0.79, 0.70)]
    lines, best = table(runs, [0.5, 1.0, 2.0], 1e-4)
    assert best == 1.0
    rule = next(line for line in lines if "(the rule)" in line)
    assert rule.startswith("| 0.0001 |") and "79.00 ± 1.41" in rule and "61.00 ± 1.41" in rule and rule.endswith("| 2 |")
    lines, best = table(runs[:2] + [run(1.0, 1, 0.6, 0.6)], [0.5, 1.0], 1e-4)
    assert best == 0.5
    assert "| 60.00 | 60.00 | 1 |" in lines[-1]  # one seed: no spread shown
