"""bench/exit_policies.py end to end on tiny data (seconds): run_fastbert.py trains both branch
trainings, the library sweeps every policy, the chosen points are timed, the JSON and the plot are
written, and a second run reuses the models."""
import json
import shutil
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import exit_policies  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TINY_YAML = """\
embedding:
  emb_size: 32
  components: [word, {name: pos, max_seq_length: 64}, seg]
encoder: {name: transformer, hidden_size: 32, layers_num: 3, heads_num: 4, feedforward_size: 37}
target: {components: [mlm]}
tokenizer: {name: bert}
"""


def tiny_args(tmp_path, timing_samples="4"):
    data = tmp_path / "data" / "tiny"
    if not data.is_dir():
        data.mkdir(parents=True)
        for split in ("train", "dev", "test"):
            shutil.copy(DATA / f"fastbert_{split}.tsv", data / f"{split}.tsv")
        (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    return ["--datasets", "tiny", "--data_dir", str(tmp_path / "data"),
            "--model", "tiny", str(tmp_path / "tiny.yaml"), "none", str(DATA / "fastbert_vocab.txt"),
            "--train_samples", "0", "--dev_samples", "0", "--test_samples", "0", "--epochs", "2", "--distill_epochs", "1",
            "--batch_size", "16", "--seq_length", "16", "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3",
            "--timing_samples", timing_samples, "--repeats", "1", "--threads", "1",
            "--out_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "results")]


def test_tiny_run_writes_the_sweeps_the_plot_and_reuses_the_models(tmp_path, capsys):
    assert exit_policies.main(tiny_args(tmp_path)) == 0
    report = json.loads((tmp_path / "results" / "exit_policies.json").read_text())
    png = (tmp_path / "results" / "exit_policies_tiny.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (2 * 682, 506)  # a 6.2 x 4.6 inch panel per branch training at 110 dpi
    per = report["results"]["tiny"]
    assert set(per) == {"distill", "joint"}
    for training, r in per.items():
        assert r["training"] == training and r["test_rows"] == len((DATA / "fastbert_test.tsv").read_text().splitlines()) - 1
        assert set(r["policies"]) == set(exit_policies.POLICY_NAMES)
        assert [s["layers"] for s in r["static"]] == [1, 2]
        for name, p in r["policies"].items():
            rows = p["rows"]
            assert [row["speed"] for row in rows] == list(exit_policies.SPEEDS)
            assert rows[0]["accuracy"] == r["teacher_accuracy"] and rows[0]["mean_exit_layer"] == 3.0  # speed 0: full model
            c = p["chosen"]
            assert c["accuracy"] >= r["teacher_accuracy"] - 0.01
            assert c["speed"] == max(row["speed"] for row in rows if row["accuracy"] >= r["teacher_accuracy"] - 0.01)
            assert f"{name}@{c['speed']:g}" in r["wall_seconds"]  # timed at its chosen point
        # the static k=1 point costs what exiting every row at layer 1 costs
        entropy_last = r["policies"]["entropy"]["rows"][-1]
        assert entropy_last["mean_exit_layer"] == 1.0
        assert abs(entropy_last["flops_speedup"] - r["static"][0]["flops_speedup"]) < 1e-9
    goals = [g["goal"] for g in report["goals"]]
    assert goals[-1] == "every adaptive curve lies above the static k-layer points at equal FLOPs"
    # a second run with the same settings reuses the trained models; no wall clock this time
    capsys.readouterr()
    assert exit_policies.main(tiny_args(tmp_path, timing_samples="0")) == 0
    out = capsys.readouterr().out
    assert "tiny/distill: reusing" in out and "tiny/joint: reusing" in out
    again = json.loads((tmp_path / "results" / "exit_policies.json").read_text())["results"]["tiny"]
    assert again["joint"]["wall_seconds"] is None
    assert again["joint"]["policies"]["entropy"]["rows"] == per["joint"]["policies"]["entropy"]["rows"]


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


def test_a_folder_it_did_not_write_is_left_alone(tmp_path, capsys):
    mine = tmp_path / "out" / "tiny_distill" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's")
    assert exit_policies.main(tiny_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"exit_policies.py: error: --out_dir: {mine.parent} holds files this bench did not write; choose another --out_dir"]
    assert mine.read_text() == "the user's"
