"""bench/exit_policies.py end to end on tiny data (seconds): trains both branch trainings, sweeps
every policy offline, times the chosen points, writes the JSON, the plot and the goal lines."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import exit_policies  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TINY_YAML = """\
embedding:
  emb_size: 32
  components: [word, {name: pos, max_seq_length: 64}, seg]
encoder: {name: transformer, hidden_size: 32, layers_num: 3, heads_num: 4, feedforward_size: 37}
target: {components: [mlm]}
tokenizer: {name: bert}
"""


def tiny_args(tmp_path):
    data = tmp_path / "data" / "tiny"
    data.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        shutil.copy(DATA / f"fastbert_{split}.tsv", data / f"{split}.tsv")
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    return ["--datasets", "tiny", "--data_dir", str(tmp_path / "data"),
            "--model", "tiny", str(tmp_path / "tiny.yaml"), "none", str(DATA / "fastbert_vocab.txt"),
            "--train_samples", "0", "--dev_samples", "0", "--test_samples", "0", "--epochs", "2", "--distill_epochs", "1",
            "--batch_size", "16", "--seq_length", "16", "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3",
            "--timing_samples", "4", "--repeats", "1", "--threads", "1",
            "--out_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "results")]


def test_tiny_run_writes_table_plot_and_goals(tmp_path, capsys):
    assert exit_policies.main(tiny_args(tmp_path)) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "results" / "exit_policies.json").read_text())
    assert (tmp_path / "results" / "exit_policies_tiny.png").stat().st_size > 5000
    per = report["results"]["tiny"]
    assert set(per) == {"distill", "joint"}
    for training, r in per.items():
        assert set(r["policies"]) == set(exit_policies.POLICY_NAMES)
        assert [s["layers"] for s in r["static"]] == [1, 2]
        for name, p in r["policies"].items():
            rows = p["rows"]
            assert [row["speed"] for row in rows] == list(exit_policies.SPEEDS)
            assert rows[0]["accuracy"] == r["teacher_accuracy"] and rows[0]["mean_exit_layer"] == 3.0  # speed 0: full model
            c = p["chosen"]
            assert c["accuracy"] >= r["teacher_accuracy"] - 0.01 and c["flops_speedup"] >= rows[0]["flops_speedup"]
            assert c["wall_speedup_batch1"] > 0 and c["wall_speedup_batched"] > 0
        # the static k=1 point costs what exiting every row at layer 1 costs
        entropy_last = r["policies"]["entropy"]["rows"][-1]
        assert entropy_last["mean_exit_layer"] == 1.0
        assert abs(entropy_last["flops_speedup"] - r["static"][0]["flops_speedup"]) < 1e-9
    assert "largest FLOPs speed-up within 1 point of the teacher, per policy" in out
    goal = [line for line in out.splitlines() if line.startswith("goal [")]
    assert any("every adaptive curve lies above the static k-layer points" in line for line in goal)
    assert "tiny: each policy's FLOPs speed-up within 1 point" in out
    assert "CPU: " in out
    # a second run reuses the trained models
    assert exit_policies.main([*tiny_args_rerun(tmp_path)]) == 0
    assert "tiny/joint: reusing" in capsys.readouterr().out


def tiny_args_rerun(tmp_path):
    """The same settings (the data folder exists already), no wall clock."""
    args = tiny_args(tmp_path / "unused")
    args[args.index("--data_dir") + 1] = str(tmp_path / "data")
    args[args.index("tiny", args.index("--model")) + 1] = str(tmp_path / "tiny.yaml")
    args[args.index("--timing_samples") + 1] = "0"
    args[args.index("--out_dir") + 1] = str(tmp_path / "out")
    args[args.index("--results_dir") + 1] = str(tmp_path / "results")
    return args


def test_accuracy_at_reads_the_best_accuracy_at_that_speedup():
    rows = [{"flops_speedup": 1.0, "accuracy": 0.8}, {"flops_speedup": 2.0, "accuracy": 0.7},
            {"flops_speedup": 3.0, "accuracy": 0.75}, {"flops_speedup": 4.0, "accuracy": 0.5}]
    assert exit_policies.accuracy_at(rows, 1.0) == 0.8
    assert abs(exit_policies.accuracy_at(rows, 2.5) - 0.75) < 1e-12  # 3.0x at 0.75 beats 2.0x at 0.7
    assert abs(exit_policies.accuracy_at(rows, 3.5) - 0.625) < 1e-12
    assert exit_policies.accuracy_at(rows, 4.5) is None  # never that fast


def test_missing_dataset_is_one_line(tmp_path, capsys):
    assert exit_policies.main(["--datasets", "tweets", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tweets/test.tsv does not exist" in err[0] and "build_sentiment_datasets.py" in err[0]
