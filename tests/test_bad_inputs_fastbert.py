"""``run_fastbert.py`` with the mistakes a new user makes (bad-inputs.md rows 132-176), in-process
through ``main([...])``: each is exit 2 and one line naming the culprit, before anything is
written; the files of an existing run are never changed by a run that is refused; nothing that
can be checked up front fails after training."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from run_fastbert import main
from tests.test_fastbert_cli import TINY_YAML
from uer.utils.cli import OutputLock

DATA = Path("tests/data").resolve()
LSTM_YAML = """\
embedding: {emb_size: 32, components: [word], layernorm: none}
encoder: {name: lstm, hidden_size: 32, layers_num: 2}
target: {components: [lm]}
tokenizer: {name: bert}
"""


def args(tmp: Path, *extra: str, out: str | None = "out/model.pt", config: str = "tiny.yaml") -> list[str]:
    argv = [
        "--config_path", str(tmp / config), "--vocab_path", str(DATA / "fastbert_vocab.txt"),
        "--train_path", str(DATA / "fastbert_train.tsv"), "--dev_path", str(DATA / "fastbert_dev.tsv"),
        "--test_path", str(DATA / "fastbert_test.tsv"),
        "--epochs_num", "1", "--distill_epochs_num", "1", "--batch_size", "16", "--seq_length", "16",
        "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3", "--seed", "3", "--report_steps", "4",
        "--branch_size", "16", "--timing_samples", "2", "--timing_batch_size", "2", "--speed", "0.5",
        "--device", "cpu", "--no_progress",
    ]
    if out is not None:
        argv += ["--output_model_path", out if out.startswith("/") else f"{tmp}/{out}"]  # keeps a trailing '/' 
    return argv + list(extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (lock files hold the pid of the last run; not run data)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def refused(capsys, argv: list[str], *needles: str) -> str:
    """``main(argv)`` exits 2 with exactly one line on stderr containing every needle, no traceback."""
    assert main(argv) == 2
    seen = capsys.readouterr()
    assert "Traceback" not in seen.out + seen.err
    lines = seen.err.splitlines()
    assert len(lines) == 1, seen.err
    assert lines[0].startswith("run_fastbert.py: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (both stages, one speed) in ``<tmp>/out/model.*``."""
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "tiny.yaml").write_text(TINY_YAML)
    assert main(args(tmp)) == 0
    assert (tmp / "out" / "model.predictions" / "speed_0.50.tsv").is_file()
    return tmp


@pytest.fixture
def victim(finished, tmp_path) -> Path:
    """A private copy of the finished run."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path


# ------------------------------------------------------------------------------ data loss (rows 160-162)


def test_a_run_with_another_vocabulary_is_refused_and_the_old_run_is_untouched(victim, capsys):
    words = (DATA / "fastbert_vocab.txt").read_text().splitlines()
    words[10], words[11] = words[11], words[10]  # same size, other ids: the old model would load and lie
    (victim / "permuted_vocab.txt").write_text("\n".join(words) + "\n")
    before = snapshot(victim / "out")
    argv = args(victim)
    argv[argv.index("--vocab_path") + 1] = str(victim / "permuted_vocab.txt")
    refused(capsys, argv, "model.vocab.txt", "another run's vocabulary")
    assert snapshot(victim / "out") == before


def test_a_run_with_another_model_config_is_refused_and_the_old_run_is_untouched(victim, capsys):
    before = snapshot(victim / "out")
    argv = args(victim)
    argv[argv.index("--branch_size") + 1] = "8"
    refused(capsys, argv, "model.config.yaml", "another run's config", "differs in: target.components")
    assert snapshot(victim / "out") == before


def test_a_run_with_other_training_flags_is_refused_and_the_old_run_is_untouched(victim, capsys):
    before = snapshot(victim / "out")
    argv = args(victim)
    argv[argv.index("--learning_rate") + 1] = "1e-3"
    refused(capsys, argv, "model.config.yaml", "differs in: fastbert.learning_rate")
    assert snapshot(victim / "out") == before


def test_a_run_on_other_data_is_refused_and_the_old_run_is_untouched(victim, capsys):
    before = snapshot(victim / "out")
    refused(capsys, args(victim, "--train_samples", "50"), "model.stage1.pt", "different run", "differs in: train")
    assert snapshot(victim / "out") == before


def test_the_default_output_path_never_touches_another_run(finished, tmp_path, capsys, monkeypatch):
    """No --output_model_path: out/fastbert/model.pt, where the shipped model lives."""
    shipped = tmp_path / "out" / "fastbert"
    shipped.mkdir(parents=True)
    for f in (finished / "out").iterdir():
        (shutil.copytree if f.is_dir() else shutil.copy)(f, shipped / f.name)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML.replace("layers_num: 2", "layers_num: 1"))  # another model
    before = snapshot(shipped)
    monkeypatch.chdir(tmp_path)
    refused(capsys, args(tmp_path, out=None), "--output_model_path out/fastbert/model.pt", "model.config.yaml")
    assert snapshot(shipped) == before


def test_a_model_that_is_not_a_resumable_run_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.pt").write_bytes(b"someone's pre-trained model")
    refused(capsys, args(tmp_path), "model.pt exists", "model.stage1.pt")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".lock")) == ["model.pt"]
    assert (tmp_path / "out" / "model.pt").read_bytes() == b"someone's pre-trained model"


# ------------------------------------------------------------------------------ collisions (rows 155-159, 163)


def test_output_paths_that_cannot_hold_the_model_are_refused_up_front(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    (tmp_path / "out" / "model.pt").mkdir(parents=True)
    (tmp_path / "afile.txt").write_text("x")
    refused(capsys, args(tmp_path, out="fb_k2/"), "--output_model_path", "ends with '/'")
    refused(capsys, args(tmp_path), "--output_model_path", "model.pt is a directory")
    refused(capsys, args(tmp_path, out="afile.txt/model.pt"), "afile.txt is a file")
    refused(capsys, args(tmp_path, "--report_path", str(tmp_path / "out"), out="other/model.pt"), "--report_path", "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "out", "tiny.yaml"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.pt"]


def test_a_second_run_into_the_same_output_fails_at_once(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    with OutputLock(tmp_path / "out" / "model.pt"):  # the first run
        refused(capsys, args(tmp_path), "another run is writing", "model.pt")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.pt.lock"]


# ------------------------------------------------------------------------------ crashes after training (rows 141, 152, 174-176)


@pytest.mark.parametrize("extra, needles", [
    (("--timing_samples", "-1"), ("--timing_samples", ">= 0")),
    (("--timing_batch_size", "0"), ("--timing_batch_size", ">= 1")),
    (("--seq_length", "100000"), ("--seq_length is 100000", "position table", "max_seq_length 64")),
])
def test_what_would_fail_after_training_is_refused_before_it(tmp_path, capsys, extra, needles):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    refused(capsys, args(tmp_path, *extra), *needles)
    assert not (tmp_path / "out").exists()


def test_fastbert_on_an_lstm_writes_the_report_with_flops_unknown(tmp_path, capsys):
    (tmp_path / "lstm.yaml").write_text(LSTM_YAML)
    assert main(args(tmp_path, "--speed", "0,1", config="lstm.yaml")) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    assert report["chosen"] is None or "FLOPs x-)" in out  # the line naming the chosen speed prints '-'
    assert f"report written to {tmp_path / 'out' / 'model.report.json'}" in out
    assert [r["flops_speedup"] for r in report["rows"]] == [None, None]
    assert report["plot"] == str(tmp_path / "out" / "model.tradeoff.png") and Path(report["plot"]).is_file()


def test_a_failing_plot_is_a_warning_and_the_report_and_predictions_are_written(victim, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    assert main(args(victim, "--speed", "0,1")) == 0
    seen = capsys.readouterr()
    assert "warning: no plot (ModuleNotFoundError: import of matplotlib halted" in seen.err and "Traceback" not in seen.err
    report = json.loads((victim / "out" / "model.report.json").read_text())
    assert [r["speed"] for r in report["rows"]] == [0.0, 1.0] and "plot" not in report
    assert (victim / "out" / "model.predictions" / "speed_1.00.tsv").is_file()


def test_a_rerun_with_other_speeds_removes_only_our_stale_predictions(victim, capsys):
    preds = victim / "out" / "model.predictions"
    (preds / "notes.txt").write_text("mine")
    (preds / "speed_0.50.tsv.bak").write_text("mine too")
    best = (victim / "out" / "model.stage1_best.pt").read_bytes()
    assert main(args(victim, "--speed", "0,1")) == 0
    assert "resumed stage 1 at step 6 " in capsys.readouterr().out
    assert sorted(p.name for p in preds.iterdir()) == ["notes.txt", "speed_0.00.tsv", "speed_0.50.tsv.bak", "speed_1.00.tsv"]
    assert (victim / "out" / "model.stage1_best.pt").read_bytes() == best  # resumed, not retrained


def test_deterministic_mode(victim):
    try:
        assert main(args(victim, "--deterministic")) == 0
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# ------------------------------------------------------------------------------ silent values and tracebacks (rows 133-176)


@pytest.mark.parametrize("extra, needles", [
    (("--speed", "0,,1"), ("--speed", "empty item")),
    (("--speed", "0.5,0.5,0.50"), ("--speed", "0.5 listed more than once")),
    (("--batch_size", "0"), ("--batch_size", ">= 1")),
    (("--batch_size", "-8"), ("--batch_size", ">= 1")),
    (("--seq_length", "1"), ("--seq_length", ">= 4")),
    (("--seq_length", "2"), ("--seq_length", ">= 4")),
    (("--threads", "-3"), ("--threads", ">= 1")),
    (("--learning_rate", "-0.1"), ("--learning_rate", "> 0")),
    (("--distill_learning_rate", "0"), ("--distill_learning_rate", "> 0")),
    (("--branch_size", "0"), ("--branch_size", ">= 1")),
    (("--branch_heads_num", "3"), ("branch_size 16 is not divisible by branch_heads_num 3",)),
    (("--train_samples", "-5"), ("--train_samples", ">= 0")),
    (("--report_steps", "0"), ("--report_steps", ">= 1")),
    (("--epochs_num", "0"), ("--epochs_num", ">= 1")),
    (("--device", "tpu0"), ("--device 'tpu0'", "expected cpu, cuda or cuda:N")),
    (("--exit_policy", "nope"), ("--exit_policy", "invalid choice", "entropy")),
    (("--branch_training", "both"), ("--branch_training", "invalid choice", "distill", "joint")),
    (("--train_path", str(DATA)), ("--train_path", "is a directory")),
    (("--distill_path", "nope.txt"), ("--distill_path nope.txt does not exist",)),
])
def test_bad_flag_values_are_one_line_before_anything_is_written(tmp_path, capsys, extra, needles):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    refused(capsys, args(tmp_path, *extra), *needles)
    assert not (tmp_path / "out").exists()


def test_a_value_from_the_config_file_is_named_with_the_file(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML + "fastbert: {report_steps: 0}\n")
    argv = args(tmp_path)
    del argv[argv.index("--report_steps"):argv.index("--report_steps") + 2]
    refused(capsys, argv, "tiny.yaml:7: fastbert.report_steps: 0 is not >= 1")
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    argv = args(tmp_path)
    del argv[argv.index("--seq_length"):argv.index("--seq_length") + 2]  # the default 128 > the table's 64
    refused(capsys, argv, "fastbert.seq_length is 128", "max_seq_length 64")
    assert not (tmp_path / "out").exists()


def test_no_config_unwritable_output_and_a_malformed_tsv_are_one_line(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    argv = args(tmp_path)
    del argv[argv.index("--config_path"):argv.index("--config_path") + 2]
    refused(capsys, argv, "give --config_path")
    refused(capsys, args(tmp_path, out="/proc/uerfb/model.pt"), "--output_model_path /proc/uerfb/model.pt", "cannot write")
    bad = tmp_path / "train.tsv"  # the reader's TsvError (file:line) becomes the one line
    bad.write_text((DATA / "fastbert_train.tsv").read_text() + "1\ttoo\tmany\tcolumns\n")
    argv = args(tmp_path)
    argv[argv.index("--train_path") + 1] = str(bad)
    refused(capsys, argv, f"{bad}:98:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, needles", [
    (("--quantize", "int8"), ("--quantize int8", "alibi")),  # row 86
    (("--runtime", "onnxruntime"), ("--runtime onnxruntime", "alibi")),  # row 87
])
def test_a_runtime_that_cannot_run_the_model_is_refused_before_training(tmp_path, capsys, extra, needles):
    """Rows 86-87: the int8 / ONNX Runtime sweep of an ALiBi model used to fail after training."""
    (tmp_path / "tiny.yaml").write_text(TINY_YAML.replace("components: [word, {name: pos, max_seq_length: 64}, seg]",
                                                          "components: [word, seg]").replace(
        "feedforward_size: 37}", "feedforward_size: 37, position_bias: alibi}"))
    refused(capsys, args(tmp_path, *extra), *needles)
    assert not (tmp_path / "out").exists()


def test_fused_on_an_lstm_is_refused_not_silently_eager(tmp_path, capsys):
    """Row 88: ``--runtime fused`` on an LSTM encoder ran eager, saying so only in the report."""
    (tmp_path / "tiny.yaml").write_text(LSTM_YAML)
    refused(capsys, args(tmp_path, "--runtime", "fused"), "--runtime fused", "no fused path")
    assert not (tmp_path / "out").exists()
