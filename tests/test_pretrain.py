"""pretrain.py on a real corpus (People's Daily): losses go down for BERT, ALBERT-style, GPT-style
and LSTM configs; a killed run resumes to the parameters of an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pretrain
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint, save_checkpoint
from uer.config import load_config
from uer.model_builder import build_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
NO_DROPOUT = ["--set", "encoder.dropout=0.0", "--set", "embedding.dropout=0.0"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pretrain")
    corpus = peoples_daily(tmp / "pd.txt", lines=800)
    return {p: run_preprocess(tmp, corpus, p, seq_length=48) for p in ("bert", "albert", "mlm", "lm", "bilm")}


def train(dataset: Path, config: str, out: Path, *extra: str) -> int:
    return pretrain.main([
        "--dataset_path", str(dataset), "--config_path", str(DATA / config), "--vocab_path", str(VOCAB_ZH),
        "--output_model_path", str(out / "model.pt"), "--no_progress", *extra,
    ])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "model.metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("config, processor, key, batch", [
    ("pretrain_bert.yaml", "bert", "mlm_loss", 16),
    ("pretrain_albert.yaml", "albert", "mlm_loss", 16),
    ("pretrain_mlm.yaml", "mlm", "mlm_loss", 16),
    ("pretrain_gpt.yaml", "lm", "lm_loss", 4),  # LM predicts every token: smaller batches cost the same
    ("pretrain_lstm.yaml", "lm", "lm_loss", 4),
    ("pretrain_bilstm.yaml", "bilm", "bilm_loss", 4),
])
def test_short_pretraining_lowers_the_loss(tmp_path, datasets, config, processor, key, batch):
    torch.set_num_threads(1)
    rc = train(datasets[processor], config, tmp_path, "--total_steps", "40", "--batch_size", str(batch),
               "--report_steps", "10", "--learning_rate", "3e-3", "--warmup", "0.1")
    assert rc == 0
    lines = metrics(tmp_path)
    assert [l["step"] for l in lines] == [10, 20, 30, 40]
    assert lines[-1][key] < lines[0][key] - 0.5, [l[key] for l in lines]
    first = lines[0]
    assert {"loss", "tokens_per_s", "lr"} <= set(first) and first["tokens_per_s"] > 0
    if key == "mlm_loss":
        assert "mlm_acc" in first
    # the final model loads strictly and carries its config
    state = read_checkpoint(tmp_path / "model.pt")
    assert state["extra"]["vocab_size"] == 21128 and "trainer" not in state["extra"]
    assert (tmp_path / "model.config.yaml").is_file() and (tmp_path / "model.pt.resume").is_file()


def test_bf16_autocast_on_cpu(tmp_path, datasets):
    rc = train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, "--total_steps", "4", "--batch_size", "4",
               "--report_steps", "2", "--precision", "bf16")
    assert rc == 0 and all(torch.isfinite(torch.tensor(l["loss"])) for l in metrics(tmp_path))


def test_dataset_and_config_must_agree(tmp_path, datasets, capsys):
    rc = train(datasets["mlm"], "pretrain_bert.yaml", tmp_path, "--total_steps", "1")
    assert rc == 2 and "--data_processor bert" in capsys.readouterr().err


def test_existing_run_is_not_overwritten_without_resume(tmp_path, datasets, capsys):
    args = ("--total_steps", "2", "--batch_size", "4")
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, *args) == 0
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, *args) == 2
    assert "--resume" in capsys.readouterr().err


def test_continue_from_a_checkpoint_with_another_head(tmp_path, datasets, capsys):
    """An mlm-only checkpoint initialises an mlm+sop model: backbone and mlm head loaded, sop fresh."""
    src_cfg = load_config(DATA / "pretrain_albert.yaml").with_target("mlm")
    torch.manual_seed(5)
    source = build_model(src_cfg, vocab_size=21128)
    save_checkpoint(tmp_path / "mlm.pt", source, src_cfg, vocab_size=21128)
    rc = train(datasets["albert"], "pretrain_albert.yaml", tmp_path / "run", "--total_steps", "1", "--batch_size", "4",
               "--learning_rate", "1e-12", "--pretrained_model_path", str(tmp_path / "mlm.pt"))
    assert rc == 0
    assert "'sop' is not in" in capsys.readouterr().err
    trained = read_checkpoint(tmp_path / "run" / "model.pt")["model"]
    for name, value in source.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=1e-6, msg=name)


RUN = [sys.executable, "-c", "import sys, pretrain; sys.exit(pretrain.main(sys.argv[1:]))"]


def _args(dataset: Path, out: Path) -> list[str]:
    return ["--dataset_path", str(dataset), "--config_path", str(DATA / "pretrain_bert.yaml"),
            "--vocab_path", str(VOCAB_ZH), "--output_model_path", str(out / "model.pt"), "--no_progress",
            "--total_steps", "30", "--batch_size", "8", "--accumulation_steps", "2", "--save_checkpoint_steps", "4",
            "--report_steps", "2", "--learning_rate", "2e-3", "--seed", "11"]


def _reported_steps(metrics_path: Path) -> list[int]:
    try:
        return [json.loads(line)["step"] for line in metrics_path.read_text().splitlines() if line.endswith("}")]
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet / a line being written
        return []


def test_killed_run_resumes_to_the_uninterrupted_parameters(tmp_path, datasets):
    """SIGKILL a real process mid-training (dropout on: RNG and data position must resume too).

    Two threads and --deterministic: the resumed run must equal the uninterrupted one bit for bit.
    The kill comes after the first checkpoint (step 4) and the report of step 6, so steps 5-6 at
    least are lost and redone; no fixed sleep, so a slow machine cannot make it miss."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    flags = ["--deterministic", "--threads", "2"]
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run(RUN + _args(datasets["bert"], full) + flags, check=True, cwd=ROOT, env=env, capture_output=True)
    proc = subprocess.Popen(RUN + _args(datasets["bert"], part) + flags, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume, reported = part / "model.pt.resume", part / "model.metrics.jsonl"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (resume.exists() and 6 in _reported_steps(reported)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resume.exists(), "no checkpoint was written before the kill"
    step = read_checkpoint(resume)["extra"]["trainer"]["step"]
    assert step < 30, "the run finished before the kill; the test needs more steps"
    done = subprocess.run(RUN + _args(datasets["bert"], part) + flags + ["--resume"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"at step {step}" in done.stderr
    a = read_checkpoint(full / "model.pt")["model"]
    b = read_checkpoint(part / "model.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    steps = [l["step"] for l in metrics(part)]
    assert steps == list(range(2, 31, 2))  # no report line lost or doubled
