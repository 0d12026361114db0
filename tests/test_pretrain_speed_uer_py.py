"""bench/pretrain_speed.py --uer_py_path: the runner drives UER-py's documented command lines.

A stand-in UER-py checkout (two small scripts written here that check their flags and log UER-py's
report lines) takes the place of the real one, which is never copied into this repo."""
import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.utils.cli import UsageError  # noqa: E402

FAKE_PREPROCESS = """
import argparse, pathlib, pickle
p = argparse.ArgumentParser()
for flag in ("--corpus_path", "--vocab_path", "--dataset_path", "--data_processor"):
    p.add_argument(flag, required=True)
p.add_argument("--processes_num", type=int, required=True)
p.add_argument("--seq_length", type=int, required=True)
p.add_argument("--full_sentences", action="store_true")
p.add_argument("--dynamic_masking", action="store_true")
a = p.parse_args()
assert a.data_processor == "mlm" and pathlib.Path(a.corpus_path).is_file()
assert a.full_sentences and a.dynamic_masking  # packed rows, masked per batch: the same work as ours
with open(a.dataset_path, "wb") as f:  # UER-py's rows: ((ids, pad_num), seg_pos), one pickle each
    pickle.dump((([1] * a.seq_length, 0), [a.seq_length]), f)
    pickle.dump((([1] * (a.seq_length // 2), a.seq_length // 2), [a.seq_length // 2]), f)
"""
FAKE_PRETRAIN = """
import argparse, json, pathlib
p = argparse.ArgumentParser()
for flag in ("--dataset_path", "--vocab_path", "--config_path", "--output_model_path"):
    p.add_argument(flag, required=True)
for flag in ("--total_steps", "--save_checkpoint_steps", "--report_steps", "--batch_size"):
    p.add_argument(flag, type=int, required=True)
# like UER-py's pretrain.py (HEAD 5743050): no --seq_length, the length comes from the dataset;
# argparse refuses anything else, as the real one did
a = p.parse_args()
cfg = json.loads(pathlib.Path(a.config_path).read_text())
assert cfg["target"] == ["mlm"] and cfg["data_processor"] == "mlm" and cfg["hidden_size"] == 128
assert pathlib.Path(a.dataset_path).stat().st_size > 0
import sys
for step in range(a.report_steps, a.total_steps + 1, a.report_steps):  # UER-py's report line, on stderr
    rate = 900.0 if step == a.report_steps else 1024.0  # the first window is warm-up
    print(f"[INFO] | {step:8d}/{a.total_steps:8d} steps| {rate:8.2f} tokens/s| loss    9.84| acc: 0.006", file=sys.stderr)
pathlib.Path(a.output_model_path).write_text("weights")
"""


@pytest.fixture
def fake_uer_py(tmp_path):
    root = tmp_path / "UER-py"
    (root / "models" / "bert").mkdir(parents=True)
    (root / "preprocess.py").write_text(FAKE_PREPROCESS)
    (root / "pretrain.py").write_text(FAKE_PRETRAIN)
    (root / "models" / "bert" / "tiny_config.json").write_text(json.dumps(
        {"emb_size": 128, "hidden_size": 128, "layers_num": 2, "target": ["mlm", "sp"], "data_processor": "bert"}))
    return root


def test_seconds_per_step_come_from_its_own_log(fake_uer_py, tmp_path):
    pytest.importorskip("six")
    from bench.pretrain_speed import uer_py_seconds_per_step

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("一句话。\n")
    work = tmp_path / "work"
    work.mkdir()
    args = Namespace(threads=1, seq_length=32, batch_size=4, uer_py_steps=40, report_every=10)
    s, real = uer_py_seconds_per_step(fake_uer_py, "tiny", str(corpus), ROOT / "tests" / "data" / "tokenizer_vocab.txt", args, work)
    assert real == pytest.approx(0.75)  # one full row and one half-padded row, read back from its dataset
    assert s == pytest.approx(4 * 32 / 1024.0)  # batch x seq over its logged rate, the warm-up window dropped
    assert (work / "uer_py_tiny.bin").read_text() == "weights"
    assert json.loads((work / "uer_py_tiny.json").read_text())["target"] == ["mlm"]


def test_a_folder_that_is_not_uer_py_is_named(tmp_path):
    pytest.importorskip("six")
    from bench.pretrain_speed import uer_py_seconds_per_step

    args = Namespace(threads=1, seq_length=32, batch_size=4, uer_py_steps=20, report_every=10)
    with pytest.raises(UsageError) as err:
        uer_py_seconds_per_step(tmp_path, "tiny", "c.txt", Path("v.txt"), args, tmp_path)
    assert str(err.value) == f"--uer_py_path {tmp_path}: no preprocess.py there (is it a UER-py checkout?)"
