"""``python -m uer predict``: a tiny FastBERT classifier and a tiny tagger, trained once per session
by their own command lines, read TSV and plain text and write JSON Lines that match ``predict()``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uer.__main__ import main

DATA = Path("tests/data")
CLASSIFIER_YAML = """\
embedding:
  emb_size: 32
  components: [word, {name: pos, max_seq_length: 64}, seg]
encoder: {name: transformer, hidden_size: 32, layers_num: 3, heads_num: 4, feedforward_size: 37}
target: {components: [mlm]}
tokenizer: {name: bert}
"""


def build_models(root: Path) -> dict[str, Path]:
    """Trains (once: later calls find the files) a 3-layer classifier and a 2-layer tagger under ``root``."""
    classifier, tagger = root / "clf" / "out" / "model.pt", root / "ner" / "out" / "model.pt"
    done = root / "done"
    if done.exists():
        return {"classifier": classifier, "tagger": tagger}
    import run_fastbert
    import run_ner
    from tests.helpers import tiny_config
    from tests.test_ner import ner_args, tiny_dataset
    from uer import build_model
    from uer.checkpoint import save_checkpoint

    clf_dir = root / "clf"
    clf_dir.mkdir(parents=True)
    (clf_dir / "tiny.yaml").write_text(CLASSIFIER_YAML)
    torch.manual_seed(0)
    cfg = tiny_config(targets=["mlm"], encoder={"layers_num": 3})
    vocab_size = len((DATA / "fastbert_vocab.txt").read_text().splitlines())
    save_checkpoint(clf_dir / "pretrained.pt", build_model(cfg, vocab_size=vocab_size), cfg)
    assert run_fastbert.main([
        "--config_path", str(clf_dir / "tiny.yaml"), "--pretrained_model_path", str(clf_dir / "pretrained.pt"),
        "--vocab_path", str(DATA / "fastbert_vocab.txt"), "--train_path", str(DATA / "fastbert_train.tsv"),
        "--dev_path", str(DATA / "fastbert_dev.tsv"), "--test_path", str(DATA / "fastbert_test.tsv"),
        "--output_model_path", str(classifier), "--report_path", str(clf_dir / "report.json"),
        "--epochs_num", "4", "--distill_epochs_num", "2", "--batch_size", "16", "--seq_length", "16",
        "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3", "--seed", "3", "--report_steps", "100",
        "--branch_size", "16", "--timing_samples", "2", "--no_progress", "--speed", "0.5", "--threads", "1",
        "--exit_plan", "always"]) == 0  # early exit at every speed: these models test batching, not the plan
    ner_dir = root / "ner"
    ner_dir.mkdir()
    tiny_dataset(ner_dir)
    assert run_ner.main(ner_args(ner_dir, "--seq_length", "32", "--speed", "0.5")) == 0
    done.touch()
    return {"classifier": classifier, "tagger": tagger}


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.getbasetemp() / "uer_serve_models")


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


TEXTS = ["the phone is terrible", "really movie was really wonderful", "today car is average", "the bus is bad"]


def test_classifier_tsv_carries_columns_and_matches_predict(models, tmp_path, capsys):
    from uer.fastbert.predictor import FastBertClassifier

    src = tmp_path / "in.tsv"
    src.write_text("id\ttext_a\tlabel\n" + "".join(f"r{i}\t{t}\t{i % 3}\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--output", str(out),
                        "--speed", "0.4", "--batch_size", "3"], capsys)
    assert code == 0, err
    assert "4 predictions" in err
    got = lines(out.read_text())
    clf = FastBertClassifier.load(models["classifier"])
    want = clf.predict(TEXTS, speed=0.4)
    assert [g["id"] for g in got] == ["r0", "r1", "r2", "r3"]
    assert [g["input_label"] for g in got] == ["0", "1", "2", "0"]  # the file's label beside the predicted one
    assert [g["label"] for g in got] == want.labels
    assert [g["exit_layer"] for g in got] == want.exit_layers
    for g, p in zip(got, want.probabilities):
        assert list(g["probabilities"]) == clf.labels
        assert list(g["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-6)


def test_the_stored_exit_plan_is_followed_unless_the_flag_says_otherwise(models, tmp_path, capsys):
    """A copy of the classifier whose stored plan says early exit pays at no speed (costs given, so
    the same on every machine): at speed 1, where the policy sends every text out after layer 1,
    --exit_plan stored (the default) runs the full model and --exit_plan off the policy."""
    from uer.checkpoint import read_checkpoint, save_checkpoint
    from uer.exit.pays import ExitProfile, StepCosts, make_plan
    from uer.fastbert.predictor import FastBertClassifier

    speeds = (0.0, 0.5, 1.0)
    profile = ExitProfile({"name": "entropy"}, 3, speeds, ((0, 0, 1), (0.2, 0.3, 0.5), (1, 0, 0)), 10)
    kept = make_plan(profile, StepCosts((1, 8), (3e-3, 24e-3), (4e-3, 32e-3), 0.0), "given")  # a step: 4 layers
    assert kept.from_speed is None
    folder = tmp_path / "planned"
    shutil.copytree(models["classifier"].parent, folder)
    clf = FastBertClassifier.load(folder / "model.pt", runtime="eager")
    stored = read_checkpoint(folder / "model.pt")
    save_checkpoint(folder / "model.pt", clf.runner.model, clf.runner.model.config,
                    **{**stored["extra"], "exit_plan": kept.as_dict()})
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")

    def exits(*flags):
        code, out, err = run(["predict", str(folder / "model.pt"), "--input", str(src), *flags], capsys)
        assert code == 0, err
        return [g["exit_layer"] for g in lines(out)]

    assert exits("--speed", "1") == [3] * len(TEXTS)
    assert exits("--speed", "1", "--exit_plan", "off") == [1] * len(TEXTS)
    assert exits("--speed", "1", "--exit_plan", "here") in ([1] * len(TEXTS), [3] * len(TEXTS))  # as this machine measures
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--exit_plan", "here"], capsys)
    assert code == 2 and "has none (trained with --exit_plan always" in err and len(err.strip().splitlines()) == 1


def test_plain_text_from_stdin_to_stdout(models, tmp_path):
    # a real process: stdin and stdout are the pipes a shell gives it
    proc = subprocess.run([sys.executable, "-m", "uer", "predict", str(models["classifier"]), "--input", "-"],
                          input="\n".join(TEXTS) + "\n\n", capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr
    got = lines(proc.stdout)
    assert len(got) == 4 and set(got[0]) == {"label", "probabilities", "exit_layer"}
    assert all(g["exit_layer"] == 3 for g in got)  # speed 0 (the default): the full model


def test_tagger_entities_with_offsets(models, tmp_path, capsys):
    from uer.tagging.predictor import NerTagger

    texts = ["我 在 北 京 和 江 泽 民", "李 鹏 是 上 海 的", "我你他"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, out, err = run(["predict", str(models["tagger"]), "--input", str(src), "--speed", "0.3"], capsys)
    assert code == 0, err
    got = lines(out)
    want = NerTagger.load(models["tagger"]).predict(texts, speed=0.3)
    assert [[(e["type"], e["start"], e["end"], e["text"]) for e in g["entities"]] for g in got] == \
        [[(e.type, e.start, e.end, e.text) for e in w] for w in want]
    for g, text in zip(got, texts):
        assert all(text[e["start"]:e["end"]] == e["text"] for e in g["entities"])
        assert 1 <= g["mean_exit_layer"] <= 2


def test_bom_and_crlf_are_read_like_the_training_files(models, tmp_path, capsys):
    src = tmp_path / "in.tsv"
    src.write_bytes("\ufefftext_a\tid\r\nthe phone is terrible\t7\r\n\r\n".encode("utf-8"))
    code, out, err = run(["predict", str(models["classifier"]), "--input", str(src), "--speed", "0"], capsys)
    assert code == 0, err
    assert [(g["id"], g["exit_layer"]) for g in lines(out)] == [("7", 3)]  # blank lines at the end are nothing


def test_existing_output_needs_force(models, tmp_path, capsys):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("the phone is terrible\n")
    out.write_text("keep me\n")
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--output", str(out)], capsys)
    assert code == 2 and "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "keep me\n"
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--output", str(out), "--force"], capsys)
    assert code == 0 and lines(out.read_text())[0]["label"]


@pytest.mark.parametrize("content, where, what", [
    ("label\ttext\n1\tfoo\n", ":1:", "no text_a column"),
    ("text_a\tid\nfine text\t1\nbroken row\n", ":3:", "1 columns, the header has 2"),
    ("text_a\tid\nfine text\t1\n\t2\n", ":3:", "empty text_a"),
    ("first text\n\nsecond text\n", ":2:", "empty line"),
    ("text_a\ttext_b\na\tb\n", ":1:", "reads single texts"),
])
def test_bad_input_names_file_and_line(models, tmp_path, capsys, content, where, what):
    src, out = tmp_path / "in.tsv", tmp_path / "out.jsonl"
    src.write_text(content)
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--output", str(out)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and f"{src}{where}" in err and what in err
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))  # nothing half-written left


def test_bad_model_and_policy(models, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    code, _, err = run(["predict", str(bogus), "--input", str(src)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bogus.pt" in err
    code, _, err = run(["predict", str(models["classifier"]), "--input", str(src), "--policy", "nope"], capsys)
    assert code == 2 and "valid policies" in err and "entropy" in err


def test_stream_is_chunked(models):
    """Rows are read lazily and predicted a chunk at a time: the reader is never drained ahead."""
    import io

    from uer.predict import Inputs, load_predictor, predict_stream

    model = load_predictor(models["classifier"])
    data = "".join(f"text number {i} is bad\n" for i in range(10)).encode()
    inputs = Inputs(io.BytesIO(data), "mem", pair=False)
    seen = []

    class Spy:
        def __init__(self):
            self.calls = 0

        def predict(self, items, speed, policy, batch_size):
            seen.append((inputs.bytes_read, len(items)))
            return model.predict(items, speed, policy, batch_size)

    out = io.StringIO()
    assert predict_stream(Spy(), inputs, out, 0.0, chunk=4) == 10
    assert [n for _, n in seen] == [4, 4, 2]
    assert seen[0][0] < len(data)  # the first chunk ran before the whole input was read
    assert len(out.getvalue().splitlines()) == 10


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_other_tasks_in_predict_and_serve(tmp_path, capsys, task):
    """A multi-label or regression FastBERT: ``uer predict`` and the server (plain batching: the
    per-layer engine reads softmax branches) answer as the predictor does."""
    import run_fastbert
    from tests.exit_task_data import multi_label, run_args, write_sets, year
    from uer.fastbert.predictor import FastBertClassifier
    from uer.predict import load_predictor
    from uer.serve.app import ServeConfig, create_app

    folder = tmp_path / task
    write_sets(folder, multi_label if task == "multi_label" else year, sizes=(("train", 64, 1), ("dev", 16, 2), ("test", 16, 3)))
    assert run_fastbert.main(run_args(folder, task, "--epochs_num", "1", "--distill_epochs_num", "1", "--speed", "0.5")) == 0
    capsys.readouterr()
    model = folder / "out" / "model.pt"
    texts = ["the car was terrible", "my phone is great today", "this book"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    code, out, err = run(["predict", str(model), "--input", str(src), "--speed", "0.5"], capsys)
    assert code == 0, err
    got = lines(out)
    want = FastBertClassifier.load(model).predict(texts, speed=0.5)
    assert [g["exit_layer"] for g in got] == want.exit_layers
    if task == "regression":
        assert [g["value"] for g in got] == pytest.approx(want.values, abs=1e-5)
    else:
        assert [g["labels"] for g in got] == want.label_sets
    service = create_app(ServeConfig(str(model), speed=0.5)).state.service
    assert service.batching == "plain" and service.model.predict(texts, 0.5) == load_predictor(model).predict(texts, 0.5)
