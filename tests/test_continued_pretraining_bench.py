"""bench/continued_pretraining.py: what reaches pre-training, the table's sums, its refusals."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import continued_pretraining as bench  # noqa: E402


def test_the_corpus_is_the_training_text_only_one_document_per_row(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n1\tfirst tweet\n0\t  second one \n2\tthird\n", encoding="utf-8")
    out = tmp_path / "corpus.txt"
    assert bench.build_corpus(train, out) == 3
    assert out.read_text(encoding="utf-8") == "first tweet\n\nsecond one\n\nthird\n\n"  # no labels, blank-line documents
    assert not list(tmp_path.glob("*.tmp"))


def test_the_gain_is_the_difference_of_the_means_over_seeds():
    runs = [{"labels": "500", "backbone": b, "seed": s, "teacher_accuracy": acc, "flops_speedup": 2.0}
            for b, s, acc in [("continued", 1, 0.60), ("continued", 2, 0.64), ("as it comes", 1, 0.58),
                              ("as it comes", 2, 0.58)]]
    _, gains = bench.summarise(runs, ["500"])
    assert gains == {"500": pytest.approx(4.0)}


@pytest.mark.parametrize("argv, message", [
    (["--labels", "five"], "--labels: expected positive numbers or 'all', got 'five'"),
    (["--total_steps", "0"], "--total_steps 0: expected a positive integer"),
    (["--all_epochs_num", "-1"], "--all_epochs_num -1: expected a positive integer"),
    (["--dev_samples", "-3"], "--dev_samples -3 --timing_samples 16: expected >= 0 and >= 1"),
    (["--speed", "2"], "--speed '2': every speed must lie in [0, 1]"),
    (["--out_dir", "README.md"], "--out_dir README.md: a file, not a folder"),
])
def test_bad_flags_are_one_line_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        bench.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err
