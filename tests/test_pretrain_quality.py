"""bench/pretrain_quality.py and bench/continued_pretraining.py judge a budget by the mean over
seeds (bench/common.py's budget_table); the runs themselves are a bench."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import budget_table  # noqa: E402
from bench.pretrain_quality import summarise  # noqa: E402


def run(backbone, labels, seed, acc, speedup=2.0):
    return {"backbone": backbone, "labels": labels, "seed": seed, "teacher_accuracy": acc, "flops_speedup": speedup}


def test_means_and_deviations_are_over_seeds_in_points():
    runs = [run("a", "500", s, acc) for s, acc in ((1, 0.80), (2, 0.82), (3, 0.84))] + [run("b", "500", 1, 0.7)]
    _, means = budget_table(runs, ["500"], ("a", "b"))
    assert means["500", "a"] == pytest.approx((82.0, 2.0))
    assert means["500", "b"] == pytest.approx((70.0, 0.0))  # one seed: no spread


def test_each_budget_is_judged_on_its_own_threshold():
    runs = [run("pre-trained", "500", s, a) for s, a in ((1, 0.80), (2, 0.82), (3, 0.84))]
    runs += [run("random init", "500", s, a) for s, a in ((1, 0.74), (2, 0.76), (3, 0.78))]  # +6 points
    runs += [run("pre-trained", "all", s, 0.90, None) for s in (1, 2, 3)]
    runs += [run("random init", "all", s, 0.89, 1.5) for s in (1, 2, 3)]  # +1 point
    runs += [run("pre-trained", "200", 1, 0.7), run("random init", "200", 1, 0.1)]  # no goal at 200
    _, goals = summarise(runs, ["500", "all", "200"], [1, 2, 3])
    assert set(goals) == {"500", "all"}
    assert goals["500"]["gain_points"] == pytest.approx(6.0) and goals["500"]["met"] is True
    assert goals["all"]["gain_points"] == pytest.approx(1.0) and goals["all"]["goal_points"] == 2.0
    assert goals["all"]["met"] is False


def test_a_kept_run_records_the_rate_its_model_config_holds(tmp_path):
    """The table's head names the fine-tuning rate the runs trained with, read from each run's
    model config (a flag's, the YAML's or uer.recipe's), not re-derived by the bench."""
    from argparse import Namespace

    from bench.common import kept_fastbert_run
    from bench.pretrain_quality import fastbert_rates

    fake = tmp_path / "fake_run_fastbert.py"  # writes what run_fastbert.py leaves beside its model
    fake.write_text(
        "import json, pathlib, sys\n"
        "a = sys.argv[1:]\n"
        "model = pathlib.Path(a[a.index('--output_model_path') + 1])\n"
        "(model.parent / 'model.config.yaml').write_text('fastbert:\\n  learning_rate: 0.00026\\n')\n"
        "pathlib.Path(a[a.index('--report_path') + 1]).write_text(json.dumps(\n"
        "    {'chosen': None, 'train_rows': 5, 'teacher_accuracy': 0.5, 'stage1': {'best': 0.75}}))\n")
    kept = kept_fastbert_run(tmp_path / "runs", "t", [sys.executable, fake], tmp_path / "log",
                             backbone="pre-trained", labels="500", seed=1)
    assert kept["learning_rate"] == 0.00026 and kept["dev_accuracy"] == 0.75
    assert fastbert_rates(Namespace(fastbert_learning_rate=None), [kept, {**kept, "learning_rate": 1e-4}]) == (
        "0.0001 / 0.00026 (run_fastbert.py's own: uer.recipe's for the size)")
    assert fastbert_rates(Namespace(fastbert_learning_rate=1e-4), [{}]) == "not recorded (older runs) (given)"
