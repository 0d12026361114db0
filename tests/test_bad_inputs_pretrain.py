"""A user's mistakes with pretrain.py and the HF converters (rows 42-107 and 212-226 of
bad-inputs.md): one line naming the culprit, exit 2 (130 for Ctrl-C), no traceback, nothing that
existed before is changed, and nothing trains before a path that cannot be written is refused."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import pretrain
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint
from uer.utils.cli import OutputLock

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "data" / "pretrain_bert.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_pretrain")
    return run_preprocess(tmp, peoples_daily(tmp / "pd.txt", lines=300), "bert", seq_length=32)


def args(dataset: Path, output, *extra: str, config: Path = CONFIG, train: bool = True) -> list[str]:
    """``train=False``: the train values come from the config alone."""
    steps = ["--total_steps", "2", "--batch_size", "4", "--report_steps", "1"] if train else []
    return ["--dataset_path", str(dataset), "--config_path", str(config), "--vocab_path", str(VOCAB_ZH),
            "--output_model_path", str(output), "--no_progress", "--device", "cpu", *steps, *extra]


def one_error(err: str, prog: str = "pretrain.py") -> str:
    """The user sees exactly one error line (argparse's usage lines aside) and no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith(f"{prog}: error: "), line
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main_catching_ctrl_c(argv: list[str]) -> int:
    """pretrain.main, with a KeyboardInterrupt that escapes it turned into a test failure
    (pytest would otherwise stop the whole session)."""
    try:
        return pretrain.main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped pretrain.main: the user would see a traceback")


@contextmanager
def alarm(seconds: int):
    """Fail instead of hanging the suite (``--batch_size -4`` used to spin forever)."""
    def fire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------------------ collisions
def test_two_models_in_one_folder_keep_their_own_config_and_metrics(tmp_path, dataset):
    """Rows 86: ``a.pt`` then ``b.pt`` in one folder used to share (and overwrite) config.yaml / metrics.jsonl."""
    assert pretrain.main(args(dataset, tmp_path / "a.pt")) == 0
    before = snapshot(tmp_path)
    assert pretrain.main(args(dataset, tmp_path / "b.pt", "--set", "encoder.layers_num=1")) == 0
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before if not k.endswith(".lock")} == {k: v for k, v in before.items() if not k.endswith(".lock")}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        "a.config.yaml", "a.metrics.jsonl", "a.pt", "a.pt.resume", "b.config.yaml", "b.metrics.jsonl", "b.pt", "b.pt.resume"]
    import yaml

    a, b = (yaml.safe_load((tmp_path / f"{n}.config.yaml").read_text()) for n in "ab")
    assert (a["encoder"]["layers_num"], b["encoder"]["layers_num"]) == (2, 1)
    assert "source" not in a
    assert [json.loads(l)["step"] for l in (tmp_path / "a.metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_trailing_slash_is_refused_and_the_parent_is_untouched(tmp_path, dataset, capsys):
    """Row 85: ``out/`` wrote a file named ``out`` and config.yaml / metrics.jsonl into the parent."""
    (tmp_path / "config.yaml").write_text("mine\n")
    (tmp_path / "metrics.jsonl").write_text("mine\n")
    before = snapshot(tmp_path)
    assert pretrain.main(args(dataset, f"{tmp_path / 'out'}/")) == 2
    line = one_error(capsys.readouterr().err)
    assert "--output_model_path" in line and "ends with '/'" in line
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_output_that_is_a_directory_is_refused_before_training(tmp_path, dataset, capsys):
    """Row 82: trained every step, then IsADirectoryError at the final save."""
    (tmp_path / "model.pt").mkdir()
    (tmp_path / "model.pt" / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    assert pretrain.main(args(dataset, tmp_path / "model.pt")) == 2
    line = one_error(capsys.readouterr().err)
    assert line == f"pretrain.py: error: --output_model_path {tmp_path / 'model.pt'} is a directory, expected a file name"
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_resume_file_that_is_a_directory_is_refused_before_training(tmp_path, dataset, capsys):
    (tmp_path / "model.pt.resume").mkdir()
    assert pretrain.main(args(dataset, tmp_path / "model.pt", "--resume")) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{tmp_path / 'model.pt.resume'} is a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt.resume"]


def test_output_under_a_file_is_refused(tmp_path, dataset, capsys):
    """Row 84: FileExistsError traceback from mkdir."""
    (tmp_path / "afile.txt").write_text("a file\n")
    assert pretrain.main(args(dataset, tmp_path / "afile.txt" / "model.pt")) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{tmp_path / 'afile.txt'} is a file, so nothing can be written under it" in line
    assert (tmp_path / "afile.txt").read_text() == "a file\n"


def test_a_second_run_into_the_same_output_fails_at_once(tmp_path, dataset, capsys):
    """Row 87: two concurrent runs both exited 0 with interleaved metrics; the last writer's model won.
    Here another process holds the output's lock, as a running pretrain.py does."""
    out = tmp_path / "model.pt"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from uer.utils.cli import OutputLock; "
         "lock = OutputLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(120)", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert pretrain.main(args(dataset, out)) == 2
    finally:
        holder.kill()
        holder.wait()
    line = one_error(capsys.readouterr().err)
    assert f"another run is writing --output_model_path {out} right now" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt.lock"]
    assert pretrain.main(args(dataset, out)) == 0  # the lock dies with its process


def test_the_lock_is_held_for_the_whole_run(tmp_path, dataset, monkeypatch, capsys):
    """While pretrain.py trains, nobody else can take its output's lock."""
    import uer.trainer

    seen = []
    fit = uer.trainer.Trainer.fit

    def probe(self, *a, **k):
        with pytest.raises(ValueError, match="another run is writing"):
            OutputLock(tmp_path / "model.pt").__enter__()
        seen.append(True)
        return fit(self, *a, **k)

    monkeypatch.setattr(uer.trainer.Trainer, "fit", probe)
    assert pretrain.main(args(dataset, tmp_path / "model.pt")) == 0 and seen == [True]


def test_an_existing_model_without_its_resume_state_is_not_overwritten(tmp_path, dataset, capsys):
    (tmp_path / "model.pt").write_bytes(b"somebody's model")
    assert pretrain.main(args(dataset, tmp_path / "model.pt")) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{tmp_path / 'model.pt'} exists" in line and "--resume" in line
    assert (tmp_path / "model.pt").read_bytes() == b"somebody's model"


# ------------------------------------------------------------------------------------- silent values
@pytest.mark.parametrize("flag, value, expected", [
    ("--batch_size", "0", "an integer >= 1"),            # row 42: ZeroDivisionError
    ("--total_steps", "0", "an integer >= 1"),           # row 44: untrained model saved, rc 0
    ("--total_steps", "-5", "an integer >= 1"),          # row 45
    ("--accumulation_steps", "0", "an integer >= 1"),    # row 49: no micro-batch ever ran
    ("--report_steps", "0", "an integer >= 1"),          # row 50: ZeroDivisionError
    ("--warmup", "2", "a number in [0, 1]"),             # row 48: LR never reached its peak
    ("--learning_rate", "-1", "a number > 0"),           # row 47: torch's text, no flag
    ("--learning_rate", "nan", "a number > 0"),
    ("--save_checkpoint_steps", "-1", "an integer >= 0"),
])
def test_flag_values_that_cannot_train_are_refused(tmp_path, dataset, capsys, flag, value, expected):
    assert pretrain.main(args(dataset, tmp_path / "model.pt", flag, value)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"pretrain.py: error: argument {flag}: expected {expected}, got {value!r}"
    assert not tmp_path.joinpath("model.pt").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["uniform", "", "Prior"])
def test_an_unknown_mlm_bias_init_is_refused(tmp_path, dataset, capsys, value):
    assert pretrain.main(args(dataset, tmp_path / "model.pt", "--mlm_bias_init", value)) == 2
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"pretrain.py: error: argument --mlm_bias_init: invalid choice: {value!r}")
    assert "prior" in line and "zero" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, value, expected", [
    ("batch_size", "-4", "is not >= 1"),
    ("total_steps", "0", "is not >= 1"),
    ("warmup", "1.5", "is not in [0, 1]"),
])
def test_the_same_values_from_the_config_are_refused(tmp_path, dataset, capsys, key, value, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(CONFIG.read_text() + f"train:\n  {key}: {value}\n  report_steps: 1\n")
    out = tmp_path / "out" / "model.pt"
    with alarm(120):
        assert pretrain.main(args(dataset, out, config=config, train=False)) == 2
    line = one_error(capsys.readouterr().err)
    # the config names the file and the line of the value (train: starts at line 15 of bad.yaml)
    lineno = len(CONFIG.read_text().splitlines()) + 2
    assert line == f"pretrain.py: error: {config}:{lineno}: train.{key}: {value} {expected}"
    assert not out.parent.exists()


def test_negative_batch_size_does_not_hang(tmp_path, dataset):
    """Row 43: ``--batch_size -4`` printed the banner and spun forever."""
    run = subprocess.run([sys.executable, "pretrain.py", *args(dataset, tmp_path / "model.pt", "--batch_size", "-4")],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == "pretrain.py: error: argument --batch_size: expected an integer >= 1, got '-4'"


# ------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device, expected", [
    ("cuda", "--device cuda: CUDA is not available on this machine"),
    ("cuda:7", "--device cuda:7: CUDA is not available on this machine"),
    ("foo", "--device 'foo': expected cpu, cuda or cuda:N"),
    ("mps", "--device mps: only cpu and cuda[:N] are supported"),
])
def test_devices_this_machine_cannot_use(tmp_path, dataset, capsys, device, expected):
    """Rows 53-56: AssertionError / RuntimeError tracebacks."""
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert pretrain.main(args(dataset, tmp_path / "model.pt") + ["--device", device]) == 2
    assert expected in one_error(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- checkpoints, data
def test_garbage_and_pickled_checkpoints_get_one_line_without_unsafe_advice(tmp_path, dataset, capsys):
    """Row 77: 8 lines of torch text advising ``weights_only=False``."""
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump({"model": {"w": [1.0, 2.0]}, "args": argparse.Namespace(lr=1e-4)}, f)
    for name in ("garbage.pt", "plain.pt"):
        assert pretrain.main(args(dataset, tmp_path / name.replace(".pt", "_out.pt"),
                                  "--pretrained_model_path", str(tmp_path / name))) == 2
        err = capsys.readouterr().err
        line = one_error(err)
        assert line.startswith(f"pretrain.py: error: {tmp_path / name} is not a uer checkpoint (")
        assert "weights_only" not in err and len(err.strip().splitlines()) == 1


def test_a_directory_given_as_checkpoint_is_called_a_directory(tmp_path, dataset, capsys):
    """Row 79: reported as 'does not exist'."""
    (tmp_path / "ckpt").mkdir()
    assert pretrain.main(args(dataset, tmp_path / "out.pt", "--pretrained_model_path", str(tmp_path / "ckpt"))) == 2
    line = one_error(capsys.readouterr().err)
    assert line == f"pretrain.py: error: --pretrained_model_path {tmp_path / 'ckpt'} is a directory, expected a file"


def test_a_binary_config_is_named(tmp_path, dataset, capsys):
    """Row 67: ``'utf-8' codec can't decode ...`` without the file."""
    (tmp_path / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\xd0\xff" * 64)
    assert pretrain.main(args(dataset, tmp_path / "out.pt", config=tmp_path / "binary.yaml")) == 2
    line = one_error(capsys.readouterr().err)
    assert line == f"pretrain.py: error: {tmp_path / 'binary.yaml'}: not UTF-8 text (byte 6); a config is a YAML file"


def test_broken_meta_json_is_named(tmp_path, dataset, capsys):
    """Row 105: ``Expecting ',' delimiter: line 2 column 1`` without the file's name."""
    broken = tmp_path / "ds"
    shutil.copytree(dataset, broken)
    (broken / "meta.json").write_text('{"format": "uer-dataset-v1"\n "oops": 1}\n')
    assert pretrain.main(args(broken, tmp_path / "out" / "model.pt")) == 2
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"pretrain.py: error: {broken / 'meta.json'}:2: not valid JSON")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ resuming
def test_resume_with_another_batch_size_is_refused(tmp_path, dataset, capsys):
    """Row 93: the data position counts batches, so batch 8 after batch 4 silently skipped samples."""
    out = tmp_path / "model.pt"
    assert pretrain.main(args(dataset, out, "--save_checkpoint_steps", "1")) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert pretrain.main(args(dataset, out, "--save_checkpoint_steps", "1", "--resume",
                              "--batch_size", "8", "--total_steps", "4")) == 2
    line = one_error(capsys.readouterr().err)
    assert line == (f"pretrain.py: error: {out}.resume was trained with --batch_size 4, this run has --batch_size 8: "
                    "its data position counts batches of 4, so resume with --batch_size 4")
    assert snapshot(tmp_path) == before
    # with the run's own batch size it continues
    assert pretrain.main(args(dataset, out, "--resume", "--total_steps", "4")) == 0
    assert read_checkpoint(f"{out}.resume")["extra"]["trainer"]["step"] == 4


def test_ctrl_c_says_where_the_last_checkpoint_is_and_resume_continues(tmp_path, dataset, monkeypatch, capsys):
    """Row 88: KeyboardInterrupt traceback with no hint about the checkpoint."""
    from tests.helpers import ctrl_c_at_step

    out = tmp_path / "model.pt"
    ctrl_c_at_step(monkeypatch, 3)
    assert main_catching_ctrl_c(args(dataset, out, "--total_steps", "6", "--save_checkpoint_steps", "2")) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"pretrain.py: interrupted at step 3; the last checkpoint is at step 2 ({out}.resume); "
                                    "rerun with --resume")
    monkeypatch.undo()
    assert pretrain.main(args(dataset, out, "--total_steps", "6", "--save_checkpoint_steps", "2", "--resume")) == 0
    assert f"resumed from {out}.resume at step 2" in capsys.readouterr().err
    assert [json.loads(l)["step"] for l in out.with_name("model.metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_before_the_first_checkpoint(tmp_path, dataset, monkeypatch, capsys):
    import uer.trainer

    def ctrl_c(self, loss_out):
        raise KeyboardInterrupt

    monkeypatch.setattr(uer.trainer.Trainer, "_global_loss", ctrl_c)
    assert main_catching_ctrl_c(args(dataset, tmp_path / "model.pt")) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "pretrain.py: interrupted at step 0, before the first checkpoint: nothing of this run was saved yet; "
        "run the same command again to start over")


# ----------------------------------------------------------------------------------------- converters
def _hf(tmp_path: Path):
    pytest.importorskip("transformers")
    from tests.test_convert_hf import hf_pretraining, uer_config, write_config

    return hf_pretraining(tmp_path), write_config(tmp_path, uer_config())


def _script(name: str):
    sys.path.insert(0, str(ROOT / "scripts"))
    import importlib

    return importlib.import_module(name)


def test_hf_to_uer_keeps_another_vocab_beside_the_output(tmp_path, capsys):
    """Row 220: cv2/vocab.txt (another vocabulary) was silently replaced."""
    to_uer = _script("convert_bert_from_huggingface_to_uer")
    hf_dir, config = _hf(tmp_path)
    out = tmp_path / "cv2"
    out.mkdir()
    (out / "vocab.txt").write_text("".join(f"zh{i}\n" for i in range(99)))
    before = snapshot(out)
    assert to_uer.main(["--input_model_path", str(hf_dir), "--config_path", str(config),
                        "--output_model_path", str(out / "model.pt")]) == 2
    line = one_error(capsys.readouterr().err, "convert_bert_from_huggingface_to_uer.py")
    assert f"{out / 'vocab.txt'} already holds another vocabulary; it is kept and nothing was written" in line
    assert snapshot(out) == before
    # the same vocabulary already there is fine
    shutil.copyfile(hf_dir / "vocab.txt", out / "vocab.txt")
    assert to_uer.main(["--input_model_path", str(hf_dir), "--config_path", str(config),
                        "--output_model_path", str(out / "model.pt")]) == 0
    assert (out / "vocab.txt").read_bytes() == (hf_dir / "vocab.txt").read_bytes()


def test_hf_to_uer_output_that_is_a_directory(tmp_path, capsys):
    """Row 218: IsADirectoryError."""
    to_uer = _script("convert_bert_from_huggingface_to_uer")
    hf_dir, config = _hf(tmp_path)
    (tmp_path / "isdir.pt").mkdir()
    assert to_uer.main(["--input_model_path", str(hf_dir), "--config_path", str(config),
                        "--output_model_path", str(tmp_path / "isdir.pt")]) == 2
    line = one_error(capsys.readouterr().err, "convert_bert_from_huggingface_to_uer.py")
    assert line.endswith(f"--output_model_path {tmp_path / 'isdir.pt'} is a directory, expected a file name")


def test_uer_to_hf_refuses_to_overwrite_another_folder_unless_forced(tmp_path, capsys):
    """Row 226: someone's config.json was overwritten silently."""
    to_uer, to_hf = _script("convert_bert_from_huggingface_to_uer"), _script("convert_bert_from_uer_to_huggingface")
    hf_dir, config = _hf(tmp_path)
    assert to_uer.main(["--input_model_path", str(hf_dir), "--config_path", str(config),
                        "--output_model_path", str(tmp_path / "uer" / "model.pt")]) == 0
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "config.json").write_text('{"theirs": true}\n')
    before = snapshot(out)
    capsys.readouterr()
    convert = ["--input_model_path", str(tmp_path / "uer" / "model.pt"), "--output_model_path", str(out)]
    assert to_hf.main(convert) == 2
    line = one_error(capsys.readouterr().err, "convert_bert_from_uer_to_huggingface.py")
    assert line.endswith(f"{out} already holds config.json from something else; nothing was written: "
                         "choose another --output_model_path, or pass --force to replace them")
    assert snapshot(out) == before
    assert to_hf.main(convert + ["--force"]) == 0
    assert sorted(snapshot(out)) == ["config.json", "model.safetensors", "vocab.txt"]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    written = snapshot(out)
    assert to_hf.main(convert) == 0  # the identical conversion again: nothing to protect
    assert snapshot(out) == written


def test_uer_to_hf_output_that_is_a_file(tmp_path, capsys):
    """Row 225: FileExistsError."""
    to_uer, to_hf = _script("convert_bert_from_huggingface_to_uer"), _script("convert_bert_from_uer_to_huggingface")
    hf_dir, config = _hf(tmp_path)
    assert to_uer.main(["--input_model_path", str(hf_dir), "--config_path", str(config),
                        "--output_model_path", str(tmp_path / "uer" / "model.pt")]) == 0
    (tmp_path / "afile.txt").write_text("a file\n")
    capsys.readouterr()
    assert to_hf.main(["--input_model_path", str(tmp_path / "uer" / "model.pt"),
                       "--output_model_path", str(tmp_path / "afile.txt")]) == 2
    line = one_error(capsys.readouterr().err, "convert_bert_from_uer_to_huggingface.py")
    assert line.endswith(f"--output_model_path {tmp_path / 'afile.txt'} is a file, expected a directory")
    assert (tmp_path / "afile.txt").read_text() == "a file\n"
    assert to_hf.main(["--input_model_path", str(tmp_path / "uer" / "model.pt"),
                       "--output_model_path", str(tmp_path / "afile.txt" / "hf")]) == 2
    line = one_error(capsys.readouterr().err, "convert_bert_from_uer_to_huggingface.py")
    assert f"{tmp_path / 'afile.txt'} is a file, so nothing can be written under it" in line


def test_hf_to_uer_garbage_weights_get_one_line(tmp_path, capsys):
    """Row 216: torch's weights_only text."""
    to_uer = _script("convert_bert_from_huggingface_to_uer")
    pytest.importorskip("transformers")
    from tests.test_convert_hf import uer_config, write_config

    config = write_config(tmp_path, uer_config())
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    assert to_uer.main(["--input_model_path", str(tmp_path / "garbage.pt"), "--config_path", str(config),
                        "--output_model_path", str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    one_error(err, "convert_bert_from_huggingface_to_uer.py")
    assert "weights_only" not in err and len(err.strip().splitlines()) == 1
