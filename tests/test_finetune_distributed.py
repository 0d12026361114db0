"""``torchrun --nproc_per_node 2 run_fastbert.py`` / ``run_ner.py`` (gloo, CPU) give the model one
process gives with the same global batch: each rank trains its share of every batch, weighted by
its share of what the loss averages, and only rank 0 writes (dropout off: it draws per rank)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_fastbert_cli import DATA, TINY_YAML
from tests.test_ner import tiny_dataset
from uer.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NO_DROPOUT = TINY_YAML.replace("emb_size: 32\n", "emb_size: 32\n  dropout: 0.0\n").replace(
    "feedforward_size: 37}", "feedforward_size: 37, dropout: 0.0, attention_dropout: 0.0}")


def run(command: list[str], processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    done = subprocess.run([sys.executable, *launcher, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def same_weights(a: Path, b: Path) -> None:
    """Equal within float tolerance, but for the keys' bias of an attention: softmax does not change
    when a constant is added to every score of a row, so its gradient is rounding noise, which Adam
    scales to full-size steps in either run (it is the Q/K/V bias's middle third)."""
    one, two = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
    assert one.keys() == two.keys()
    for name in one:
        x, y = one[name], two[name]
        if name.endswith("qkv.bias"):
            third = len(x) // 3
            x, y = torch.cat([x[:third], x[2 * third:]]), torch.cat([y[:third], y[2 * third:]])
        torch.testing.assert_close(y, x, rtol=1e-4, atol=2e-5, msg=name)


pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")


def test_run_fastbert_on_two_processes_equals_one(tmp_path):
    (tmp_path / "tiny.yaml").write_text(NO_DROPOUT)
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        done = run(["run_fastbert.py", "--config_path", str(tmp_path / "tiny.yaml"), "--vocab_path", str(DATA / "fastbert_vocab.txt"),
                    "--train_path", str(DATA / "fastbert_train.tsv"), "--dev_path", str(DATA / "fastbert_dev.tsv"),
                    "--test_path", str(DATA / "fastbert_test.tsv"), "--output_model_path", str(out / "model.pt"),
                    "--epochs_num", "2", "--distill_epochs_num", "1", "--batch_size", "7", "--seq_length", "16",
                    "--learning_rate", "3e-3", "--seed", "3", "--branch_size", "16", "--timing_samples", "0",
                    "--speed", "0,0.5", "--no_progress", "--no_plot", "--runtime", "eager", "--threads", "1",
                    "--dropout", "0", "--device", "cpu"], n)
        outputs[n] = (out, done)
    (one, _), (two, done) = outputs[1], outputs[2]
    assert "fine-tuning over 2 processes (gloo)" in done.stdout
    # the distillation rate nobody set comes from uer.recipe, said once (rank 0), not once per process
    assert done.stdout.count("fine-tuning: learning rate 3.0e-03 (given), self-distillation") == 1, done.stdout
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())  # rank 0 wrote, once
    for name in ("model.pt", "model.stage1_best.pt", "model.stage2_best.pt"):
        same_weights(one / name, two / name)
    a, b = (json.loads((d / "model.report.json").read_text()) for d in (one, two))
    assert [d["accuracy"] for d in a["stage1"]["dev"]] == [d["accuracy"] for d in b["stage1"]["dev"]]
    assert a["stage1"]["best_epoch"] == b["stage1"]["best_epoch"] and a["teacher_accuracy"] == b["teacher_accuracy"]


def test_run_ner_on_two_processes_equals_one(tmp_path):
    tiny_dataset(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(cfg.read_text().replace("emb_size: 16\n", "emb_size: 16\n  dropout: 0.0\n").replace(
        "feedforward_size: 24}", "feedforward_size: 24, dropout: 0.0, attention_dropout: 0.0}"))
    for n in (1, 2):
        run(["run_ner.py", "--config_path", str(cfg), "--vocab_path", str(tmp_path / "vocab.txt"),
             "--train_path", str(tmp_path / "train.tsv"), "--dev_path", str(tmp_path / "dev.tsv"),
             "--test_path", str(tmp_path / "test.tsv"), "--label2id_path", str(tmp_path / "label2id.json"),
             "--output_model_path", str(tmp_path / f"p{n}" / "model.pt"), "--epochs_num", "2", "--distill_epochs_num", "1",
             "--batch_size", "9", "--seq_length", "8", "--learning_rate", "1e-3", "--timing_samples", "0",
             "--speed", "0,0.5", "--no_progress", "--no_plot", "--threads", "1", "--device", "cpu", "--dropout", "0"], n)
    for name in ("model.pt", "model.stage1_best.pt", "model.stage2_best.pt"):
        same_weights(tmp_path / "p1" / name, tmp_path / "p2" / name)
