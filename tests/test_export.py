"""``python -m uer export MODEL --format onnx OUT/``: the files run on ONNX Runtime and give what our
eager model gives (fp32, 1e-4, every exit step and the full model); the manifest describes them;
bad inputs are one line."""
import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.test_predictor_api import save_model
from uer.__main__ import main
from uer.fastbert.predictor import FastBertClassifier


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model_path = save_model(folder / "run")
    assert main(["export", str(model_path), "--format", "onnx", str(folder / "onnx")]) == 0
    return model_path, folder / "onnx"


def run_steps(out, src, seg):
    manifest = json.loads((out / "manifest.json").read_text())
    sessions = [ort.InferenceSession(str(out / name)) for name in manifest["steps"]]
    probs, hidden = [], None
    for i, s in enumerate(sessions):
        feeds = {"src": src, "seg": seg} if i == 0 else {"hidden": hidden, "seg": seg}
        hidden, logits = s.run(None, feeds)
        probs.append(torch.softmax(torch.from_numpy(logits), -1))
    (full,) = ort.InferenceSession(str(out / manifest["full"])).run(["logits"], {"src": src, "seg": seg})
    return torch.stack(probs, 1), torch.softmax(torch.from_numpy(full), -1)


def test_export_round_trip_matches_eager(exported):
    model_path, out = exported
    clf = FastBertClassifier.load(model_path, runtime="eager")
    enc = clf.encode(["a short one", "the movie was really great today and then some", "ok"])
    from uer.fastbert.data import collate

    batch = collate(enc, list(range(3)), clf.tokenizer.vocab.pad_id, torch.device("cpu"))
    src, seg = batch["src"], batch["seg"]
    assert bool((seg == 0).any())  # padding inside the batch: the mask is exercised
    steps, full = run_steps(out, src.numpy(), seg.numpy())
    torch.testing.assert_close(steps, clf.runner.layer_probs(src, seg), rtol=0, atol=1e-4)
    torch.testing.assert_close(full, clf.runner.full_model_probs(src, seg), rtol=0, atol=1e-4)


def test_manifest_describes_the_files(exported):
    model_path, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "uer-fastbert-onnx" and manifest["labels"] == ["neg", "neu", "pos"]
    assert manifest["steps"] == [f"step_{i}.onnx" for i in range(manifest["layers_num"])]
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert (out / "vocab.txt").read_text().splitlines() == (model_path.parent / "model.vocab.txt").read_text().splitlines()
    assert manifest["quantize"] is None and "entropy" in manifest["exit_rule"]


def test_int8_export_runs(exported, tmp_path):
    model_path, out = exported
    assert main(["export", str(model_path), str(tmp_path / "q"), "--quantize", "int8"]) == 0
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["quantize"] == "int8"
    src = np.array([[2, 7, 9, 11, 3]], dtype=np.int64)
    steps, full = run_steps(tmp_path / "q", src, np.ones_like(src))
    ref, _ = run_steps(out, src, np.ones_like(src))
    assert 0 < float((steps - ref).abs().max()) < 0.1


def test_bad_exports_are_one_line(exported, tmp_path, capsys):
    model_path, out = exported
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(model_path), str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["export", str(out), str(tmp_path / "o")]) == 2  # a directory where the model belongs
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["export", str(model_path), str(out)]) == 0  # over an earlier export: replaced
