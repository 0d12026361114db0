"""``torchrun --nproc_per_node 2`` (gloo, CPU) ends with the parameters of one process that trains
on the same global batches: ranks split each batch, masks do not depend on the rank, and losses
averaged over a rank's own masked tokens are re-weighted by the global count."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_pretrain import DATA, NO_DROPOUT, ROOT
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint
from uer.config import load_config
from uer.model_builder import build_model


def _args(dataset: Path, out: Path, config: str = "pretrain_bert.yaml") -> list[str]:
    return ["pretrain.py", "--dataset_path", str(dataset), "--config_path", str(DATA / config),
            "--vocab_path", str(VOCAB_ZH), "--output_model_path", str(out / "model.pt"), "--no_progress",
            "--total_steps", "6", "--batch_size", "8", "--accumulation_steps", "2", "--report_steps", "3",
            "--learning_rate", "2e-3", "--warmup", "0.0", "--seed", "3", "--device", "cpu",
            *NO_DROPOUT, "--set", "encoder.attention_dropout=0.0"]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
@pytest.mark.parametrize("config", ["pretrain_bert.yaml", "pretrain_bert_h128.yaml"])  # the second: with the scaffold
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, config):
    corpus = peoples_daily(tmp_path / "pd.txt", lines=400)
    dataset = run_preprocess(tmp_path, corpus, "bert", seq_length=48)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, *_args(dataset, one, config)], check=True, cwd=ROOT, env=env, capture_output=True)
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *_args(dataset, two, config)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "over 2 process(es)" in ddp.stderr
    a = read_checkpoint(one / "model.pt")["model"]
    b = read_checkpoint(two / "model.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=2e-5, msg=name)
    # the runs did train: parameters moved far beyond that tolerance
    torch.manual_seed(3)
    init = build_model(load_config(DATA / config), vocab_size=len(a["embedding.components.word.embedding.weight"]))
    assert max((a[k] - v).abs().max().item() for k, v in init.state_dict().items()) > 1e-3
    if config == "pretrain_bert_h128.yaml":  # every rank held the scaffold (gradient hooks under DDP)
        from uer.scaffold import position_table

        assert "position scaffold:" in ddp.stderr
        for state in (a, b):
            assert torch.equal(state["embedding.components.pos.embedding.weight"], position_table(64, 128))
    lines_one = (one / "model.metrics.jsonl").read_text().splitlines()
    lines_two = (two / "model.metrics.jsonl").read_text().splitlines()
    assert len(lines_one) == len(lines_two) == 2
