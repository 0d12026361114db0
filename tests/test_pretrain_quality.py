"""bench/pretrain_quality.py: the few-label table and its goal lines (the runs themselves are a bench)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pretrain_quality import summarise  # noqa: E402


def run(backbone, labels, seed, acc, speedup=2.0):
    return {"backbone": backbone, "labels": labels, "seed": seed, "teacher_accuracy": acc, "flops_speedup": speedup}


def test_goal_lines_use_the_mean_over_seeds_and_each_budget_has_its_threshold():
    runs = [run("pre-trained", "500", s, a) for s, a in ((1, 0.80), (2, 0.82), (3, 0.84))]
    runs += [run("random init", "500", s, a) for s, a in ((1, 0.74), (2, 0.76), (3, 0.78))]  # +6 points
    runs += [run("pre-trained", "all", s, 0.90, None) for s in (1, 2, 3)]
    runs += [run("random init", "all", s, 0.89, 1.5) for s in (1, 2, 3)]  # +1 point
    lines, goals = summarise(runs, ["500", "all"], [1, 2, 3])
    assert lines[2] == "| 500 | pre-trained | 82.00 ± 2.00 | 2.00x | 3 |"
    assert lines[3] == "| 500 | random init | 76.00 ± 2.00 | 2.00x | 3 |"
    assert lines[4] == "| all | pre-trained | 90.00 ± 0.00 | n/a | 3 |"
    assert lines[-2] == "goal, 500 labels: pre-trained beats random by >= 5 points: +6.00 -> met"
    assert lines[-1] == "goal, all labels: pre-trained beats random by >= 2 points: +1.00 -> not met"
    assert goals["500"]["met"] is True and goals["all"]["met"] is False


def test_a_budget_without_a_goal_and_too_few_seeds_are_said():
    runs = [run("pre-trained", "200", 1, 0.7), run("random init", "200", 1, 0.65)]
    lines, goals = summarise(runs, ["200"], [1])
    assert lines[-2] == "labels 200: pre-trained - random = +5.00 points (no goal at this budget)"
    assert lines[-1] == "(only 1 seed(s): the protocol asks for 3)"
    assert goals == {}
