"""pretrain.py on a real corpus (People's Daily): losses go down for BERT, ALBERT-style, GPT-style
and LSTM configs; a killed run resumes to the parameters of an uninterrupted one."""
from __future__ import annotations

import json
import math
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
    # from a zero MLM bias: the prior would start MLM at the unigram loss, the drop this test looks for
    # (test_mlm_bias_starts_at_the_token_prior_or_at_zero covers the prior)
    rc = train(datasets[processor], config, tmp_path, "--total_steps", "40", "--batch_size", str(batch),
               "--report_steps", "10", "--learning_rate", "3e-3", "--warmup", "0.1", "--mlm_bias_init", "zero")
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


# ------------------------------------------------------------------------ defaults from uer.recipe
# pretrain_mlm.yaml is hidden 32 x 2 layers: the rule gives 3e-3 * 128/32 = 1.2e-2, clipped to 5e-3
RULE_LR = 5e-3
FEW_STEPS = ("--total_steps", "2", "--batch_size", "4", "--report_steps", "1")


def recorded_train(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "model.config.yaml").read_text())["train"]


def schedule_of(out: Path, key: str = "train") -> tuple:
    train = recorded_train(out) if key == "train" else read_checkpoint(out / "model.pt")["config"]["train"]
    return train["learning_rate"], train["warmup"], train["scheduler"]


def test_nobody_chose_a_schedule_so_the_recipe_did(tmp_path, datasets, capsys):
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, *FEW_STEPS) == 0
    assert schedule_of(tmp_path) == (RULE_LR, 0.05, "linear")
    assert schedule_of(tmp_path, "checkpoint") == (RULE_LR, 0.05, "linear")  # the model carries what trained it
    # ... and the optimizer used it: no warmup step (int(0.05 * 2) = 0), then halfway down to 0
    assert metrics(tmp_path)[0]["lr"] == pytest.approx(RULE_LR / 2)
    err = capsys.readouterr().err.splitlines()
    assert ("schedule: learning rate 5.0e-03 for hidden 32 x 2 layers, warmup 0 of 2 steps, then linear decay to 0 "
            "[uer.recipe; --learning_rate / --warmup / --scheduler override]") in err
    assert not any("nsp" in line for line in err)  # mlm alone: no advice


def test_continuing_a_trained_model_gets_the_gentler_rate(tmp_path, datasets, capsys):
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "first", *FEW_STEPS) == 0
    capsys.readouterr()
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "second", *FEW_STEPS,
                 "--pretrained_model_path", str(tmp_path / "first" / "model.pt")) == 0
    assert schedule_of(tmp_path / "second") == (1e-4, 0.05, "linear")
    line = next(l for l in capsys.readouterr().err.splitlines() if l.startswith("schedule: "))
    assert line.startswith(f"schedule: learning rate 1.0e-04 for continued pre-training of a trained model "
                           f"(from random weights: {RULE_LR:.1e})")


YAML_TRAIN = "train:\n  learning_rate: 0.0002\n  scheduler: cosine\n"


@pytest.mark.parametrize("extra, yaml_train, expected", [
    (("--learning_rate", "7e-4"), "", (7e-4, 0.05, "linear")),
    (("--scheduler", "constant", "--warmup", "0"), "", (RULE_LR, 0.0, "constant")),
    (("--set", "train.warmup=0.5"), "", (RULE_LR, 0.5, "linear")),
    ((), YAML_TRAIN, (2e-4, 0.05, "cosine")),
    (("--learning_rate", "9e-4", "--set", "train.warmup=0.5"), YAML_TRAIN, (9e-4, 0.5, "cosine")),  # a flag beats the YAML
])
def test_what_somebody_chose_wins_and_the_rest_comes_from_the_recipe(tmp_path, datasets, capsys, extra, yaml_train,
                                                                      expected):
    config = tmp_path / "config.yaml"
    config.write_text((DATA / "pretrain_mlm.yaml").read_text() + yaml_train)
    out = tmp_path / "out"
    assert train(datasets["mlm"], str(config), out, *FEW_STEPS, *extra) == 0
    assert schedule_of(out) == expected
    line = next(l for l in capsys.readouterr().err.splitlines() if l.startswith("schedule: "))
    chosen = f"learning rate {expected[0]:.1e} (given)" if expected[0] != RULE_LR else "learning rate 5.0e-03 for hidden 32"
    assert chosen in line


def test_a_short_nsp_run_is_advised_to_use_mlm_alone(tmp_path, datasets, capsys):
    assert train(datasets["bert"], "pretrain_bert.yaml", tmp_path, *FEW_STEPS) == 0
    notes = [l for l in capsys.readouterr().err.splitlines() if l.startswith("note: ")]
    assert notes[0] == ("note: 2 steps is a small budget and nsp takes half the training signal; the recommended path is "
                        "mlm alone: preprocess.py --data_processor mlm and pretrain.py --set 'target.components=[mlm]'")
    # from scratch with learned positions only: the plateau advice (README, pre-training)
    assert notes[1].startswith("note: from scratch with learned positions only") and len(notes) == 2


def test_alibi_from_scratch_gets_no_position_advice(tmp_path, datasets, capsys):
    assert train(datasets["mlm"], str(DATA / "pretrain_mlm.yaml"), tmp_path, *FEW_STEPS,
                 "--set", "encoder.position_bias=alibi") == 0
    assert not [l for l in capsys.readouterr().err.splitlines() if l.startswith("note: from scratch")]


def _expected_prior(dataset: Path) -> torch.Tensor:
    from uer.config import TokenizerConfig
    from uer.data.dataset import DatasetFiles
    from uer.data.masking import mask_ids
    from uer.recipe import dataset_token_ids, token_log_prior
    from uer.tokenizers import build_tokenizer

    vocab = build_tokenizer(TokenizerConfig(name="bert"), vocab_path=VOCAB_ZH).vocab
    prior = token_log_prior(dataset_token_ids(DatasetFiles.open(dataset)), len(vocab), mask_ids(vocab).special_ids)
    return prior - prior.mean()


MLM_BIAS = "target.components.mlm.head.decoder.bias"


@pytest.mark.parametrize("init", ["prior", "zero"])
def test_mlm_bias_starts_at_the_token_prior_or_at_zero(tmp_path, datasets, capsys, init):
    """One step at a learning rate of 1e-12: the saved bias is where it started."""
    rc = train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, "--total_steps", "1", "--batch_size", "16",
               "--report_steps", "1", "--learning_rate", "1e-12", "--mlm_bias_init", init)
    assert rc == 0
    bias = read_checkpoint(tmp_path / "model.pt")["model"][MLM_BIAS]
    uniform = math.log(21128)
    first_loss = metrics(tmp_path)[0]["mlm_loss"]  # of the model as it started
    said = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mlm bias: ")]
    if init == "zero":
        torch.testing.assert_close(bias, torch.zeros_like(bias), rtol=0, atol=1e-9)
        assert said == []
        assert first_loss > uniform - 0.5  # a fresh model guesses about uniformly
    else:
        expected = _expected_prior(datasets["mlm"])
        torch.testing.assert_close(bias, expected, rtol=0, atol=1e-6)
        assert bias.std() > 1.0  # a real prior over a 21,128-token vocabulary, not a constant
        assert first_loss < uniform - 2.0  # ... the prior starts it near the unigram solution
        assert said == [f"mlm bias: set to the log unigram prior of {len(read_tokens(datasets['mlm']))} tokens of "
                        f"{datasets['mlm']} (--mlm_bias_init zero keeps it at 0)"]


def read_tokens(dataset: Path):
    from uer.data.dataset import DatasetFiles

    return DatasetFiles.open(dataset).tokens


def test_the_prior_counts_the_original_tokens_of_a_statically_masked_dataset(tmp_path):
    from uer.data.dataset import DatasetFiles
    from uer.recipe import dataset_token_ids

    corpus = peoples_daily(tmp_path / "pd.txt", lines=100)
    dynamic = DatasetFiles.open(run_preprocess(tmp_path, corpus, "mlm", "dynamic", seq_length=48))
    static = DatasetFiles.open(run_preprocess(tmp_path, corpus, "mlm", "static", "--static_masking", seq_length=48))
    assert (static.tokens != dynamic.tokens).any()  # masked input ...
    assert (dataset_token_ids(static) == dynamic.tokens).all()  # ... counted as the corpus has it
    assert dataset_token_ids(dynamic) is not None and (dataset_token_ids(dynamic) == dynamic.tokens).all()


def test_a_resumed_run_keeps_its_recorded_schedule_and_its_weights(tmp_path, datasets, capsys, monkeypatch):
    """The values recorded at the start win over the rule on --resume, as if uer.recipe changed since
    (a changed value is another run: tests/test_bad_inputs_round3.py); the resumed weights are not
    re-initialised."""
    import uer.recipe

    args = ("--batch_size", "4", "--report_steps", "1", "--save_checkpoint_steps", "2")
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, "--total_steps", "2", *args) == 0
    monkeypatch.setattr(uer.recipe, "MAX_LR", 4e-4)  # what a newer rule would choose
    monkeypatch.setattr(uer.recipe, "WARMUP_FRACTION", 0.25)
    capsys.readouterr()
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, "--total_steps", "4", "--resume", *args) == 0
    assert schedule_of(tmp_path) == (RULE_LR, 0.05, "linear")
    err = capsys.readouterr().err
    assert "schedule: learning rate 5.0e-03 (recorded), warmup 0 of 4 steps (recorded), then linear (recorded)" in err
    assert "mlm bias:" not in err and "resumed from" in err
    # the optimizer continued with it: after step 3 of 4 (no warmup) the rate is a quarter of the recorded peak...
    assert metrics(tmp_path)[2]["lr"] == pytest.approx(RULE_LR / 4)
    # ... while the rule today gives a fresh run the new values
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "fresh", "--total_steps", "4", *args) == 0
    assert schedule_of(tmp_path / "fresh") == (4e-4, 0.25, "linear")


def test_a_broken_recorded_schedule_is_named(tmp_path, datasets, capsys):
    args = ("--batch_size", "4", "--report_steps", "1", "--save_checkpoint_steps", "1", "--total_steps", "1")
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, *args) == 0
    side = tmp_path / "model.config.yaml"
    side.write_text(side.read_text().replace("scheduler: linear", "scheduler: sometimes"))
    capsys.readouterr()
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path, *args, "--resume") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"pretrain.py: error: {side}:") and "train.scheduler" in line and "sometimes" in line


def test_resume_with_recipe_defaults_is_exact(tmp_path, datasets, monkeypatch):
    """Nothing chosen (recipe schedule, prior bias), interrupted after the checkpoint of step 2 and
    resumed: the parameters equal those of an uninterrupted run."""
    from tests.helpers import ctrl_c_at_step

    args = ("--total_steps", "5", "--batch_size", "4", "--report_steps", "1", "--save_checkpoint_steps", "2")
    torch.set_num_threads(1)
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "full", *args) == 0
    ctrl_c_at_step(monkeypatch, 3)
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "part", *args) == 130
    monkeypatch.undo()
    assert train(datasets["mlm"], "pretrain_mlm.yaml", tmp_path / "part", *args, "--resume") == 0
    a = read_checkpoint(tmp_path / "full" / "model.pt")["model"]
    b = read_checkpoint(tmp_path / "part" / "model.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    assert schedule_of(tmp_path / "part") == schedule_of(tmp_path / "full") == (RULE_LR, 0.05, "linear")


def test_a_pretrained_checkpoint_without_an_mlm_head_gets_the_prior(tmp_path, datasets):
    """The prior goes to an MLM head that starts untrained, also on a loaded backbone
    (test_continue_from_a_checkpoint_with_another_head: a loaded MLM head keeps its bias)."""
    src_cfg = load_config(DATA / "pretrain_albert.yaml").with_target("sop")
    torch.manual_seed(5)
    save_checkpoint(tmp_path / "sop.pt", build_model(src_cfg, vocab_size=21128), src_cfg, vocab_size=21128)
    rc = train(datasets["albert"], "pretrain_albert.yaml", tmp_path / "run", "--total_steps", "1", "--batch_size", "4",
               "--learning_rate", "1e-12", "--pretrained_model_path", str(tmp_path / "sop.pt"))
    assert rc == 0
    bias = read_checkpoint(tmp_path / "run" / "model.pt")["model"][MLM_BIAS]
    torch.testing.assert_close(bias, _expected_prior(datasets["albert"]), rtol=0, atol=1e-6)


def test_save_checkpoint_steps_0_saves_only_at_the_end(tmp_path, datasets):
    """``--save_checkpoint_steps 0`` means what its help says: no checkpoint along the way, the
    model at the end (the config's range used to refuse 0)."""
    out = tmp_path / "run"
    assert train(datasets["mlm"], "pretrain_mlm.yaml", out, "--total_steps", "3", "--batch_size", "4",
                 "--save_checkpoint_steps", "0") == 0
    assert (out / "model.pt").is_file()
    assert "save_checkpoint_steps: 0" in (out / "model.config.yaml").read_text()
