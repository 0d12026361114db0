"""``python -m uer export`` of a tagger written by run_ner.py: the step graphs run on ONNX Runtime and,
driven by nothing but the manifest's token-exit rule (an independent numpy reading of it here), give
the exits and tag distributions of ``TokenExit`` / ``NerTagger`` in eager mode; int8 keeps the labels."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.test_ner import TAGS, batch_of, tiny_model
from uer.__main__ import main
from uer.checkpoint import save_checkpoint
from uer.tagging import NerTagger
from uer.tagging.export import ExportedTagger

CHARS = [chr(0x4E00 + i) for i in range(94)]  # 5 specials + 94 characters: the tiny model's 99 ids


def save_tagger(folder: Path, layers: int = 3, **stored) -> Path:
    """An untrained tagger checkpoint as run_ner.py writes it (branch 0 sure of some tokens only)."""
    model = tiny_model(layers=layers)
    extra = {"id2label": TAGS, "vocab_size": 99, "seq_length": 16, "vocab_file": "model.vocab.txt",
             "exit_policy": "entropy", "window": 0, **stored}
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", model, model.config, **extra)
    (folder / "model.vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]) + "\n",
                                            encoding="utf-8")
    return folder / "model.pt"


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def run_exported(out: Path, src: np.ndarray, seg: np.ndarray, speed: float, window: int):
    """The manifest's rule (entropy policy), read literally: -> probs (B, T, C) at each token's exit
    step and its exit step (1-based; 0 at padding)."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["exit_policy"] == {"name": "entropy"}
    real = seg > 0
    if speed <= 0:  # the full model
        (logits,) = ort.InferenceSession(str(out / manifest["full"])).run(["logits"], {"src": src, "seg": seg})
        return softmax(logits) * real[..., None], np.where(real, manifest["layers_num"], 0)  # padding: zeros
    labels = len(manifest["labels"])
    probs_out = np.zeros((*src.shape, labels), np.float32)
    exit_out = np.zeros(src.shape, np.int64)
    stay = real.copy()
    hidden = None
    for i, name in enumerate(manifest["steps"]):
        session = ort.InferenceSession(str(out / name))
        feeds = {"src": src, "seg": seg} if i == 0 else {"hidden": hidden, "seg": seg, "stay": stay}
        hidden, logits = session.run(["hidden_out", "logits"], feeds)
        p = softmax(logits.astype(np.float64))
        entropy = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(-1)
        may = (entropy < speed * math.log(labels)) | ~stay  # a token that has left counts as one that may
        if speed >= 1 or i == len(manifest["steps"]) - 1:
            may[:] = True
        if window > 0:
            padded = np.pad(~may & real, ((0, 0), (window, window)))
            doubt = np.stack([padded[:, k:k + src.shape[1]] for k in range(2 * window + 1)]).any(0)
            may = ~doubt
        leave = may & stay
        probs_out[leave] = softmax(logits)[leave]
        exit_out[leave] = i + 1
        stay = stay & ~leave
        if not stay.any():
            break
    return probs_out, exit_out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagger")
    model_path = save_tagger(folder / "run", chosen_speed=0.5)
    assert main(["export", str(model_path), str(folder / "onnx")]) == 0
    return model_path, folder / "onnx"


@pytest.mark.parametrize("window", [0, 1])
@pytest.mark.parametrize("speed", [0.0, 0.5, 1.0])
def test_exported_token_exit_equals_eager(exported, speed, window):
    model_path, out = exported
    tagger = NerTagger.load(model_path, runtime="eager")
    src, seg = batch_of([9, 5, 7, 12])  # padding inside the batch: the mask and the window's edges
    ref = tagger.runner.predict(src, seg, speed=speed, window=window)
    probs, exits = run_exported(out, src.numpy(), seg.numpy(), speed, window)
    if speed == 0.5:
        assert {1, 3} <= set(ref.exit_layer[seg > 0].tolist())  # mixed exits: frozen tokens are attended to
    assert np.array_equal(exits, ref.exit_layer.numpy())
    torch.testing.assert_close(torch.from_numpy(probs), ref.probs, rtol=0, atol=1e-5)
    # uer's own runner of the files (ExportedTagger) reads the rule the same way, every policy included
    runner = ExportedTagger(out)
    for policy in ("entropy", "patience", "confidence"):
        ref_p = tagger.runner.predict(src, seg, speed=speed, window=window, policy=policy)
        got, got_exits = runner.predict(src.numpy(), seg.numpy(), speed, window, policy)
        assert np.array_equal(got_exits, ref_p.exit_layer.numpy()), policy
        torch.testing.assert_close(torch.from_numpy(got), ref_p.probs, rtol=0, atol=1e-5)
    # the application API: the same tags and exits per character, through NerTagger (eager)
    chars = [[CHARS[int(i) - 5] for i in row[1:int(s.sum())]] for row, s in zip(src, seg)]
    tags, layers = tagger.tag(chars, speed=speed, window=window)
    for b, (t, l) in enumerate(zip(tags, layers)):
        n = len(t) + 1
        assert t == [TAGS[k] for k in probs[b, 1:n].argmax(-1)] and l == exits[b, 1:n].tolist()


def test_manifest_states_the_token_exit_rule(exported):
    model_path, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "uer-tagger-onnx" and manifest["labels"] == TAGS
    assert manifest["steps"] == ["step_0.onnx", "step_1.onnx", "step_2.onnx"] and manifest["full"] == "full.onnx"
    assert manifest["speed"] == 0.5 and manifest["window"] == 0 and manifest["exit_policy"] == {"name": "entropy"}
    rule = manifest["exit_rule"]
    assert rule.startswith("per token") and "entropy (FastBERT)" in rule and "frozen" in rule and "stay" in rule
    assert "[CLS]" in manifest["tokenization"]["row"] and manifest["seq_length"] == 16
    assert (out / "vocab.txt").read_text().splitlines() == (model_path.parent / "model.vocab.txt").read_text().splitlines()
    # a window and another policy are stated as stored
    other = save_tagger(model_path.parent.parent / "w2", window=2, exit_policy="patience")
    assert main(["export", str(other), str(out.parent / "w2_onnx")]) == 0
    m2 = json.loads((out.parent / "w2_onnx" / "manifest.json").read_text())
    assert m2["window"] == 2 and "within +-2 positions" in m2["exit_rule"] and "patience (PABEE)" in m2["exit_rule"]


def test_int8_tagger_keeps_the_labels(exported, tmp_path):
    """Judged by what holds on every CPU: the files are quantized for real (distributions move) and
    the tags mostly agree with fp32 (a broken model agrees on about 1 in 7 of 7 tags)."""
    model_path, out = exported
    assert main(["export", str(model_path), str(tmp_path / "q"), "--quantize", "int8"]) == 0
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["quantize"] == "int8" and manifest["format"] == "uer-tagger-onnx"
    from uer.runtime.cpu import this_cpu_scheme

    assert manifest["int8"]["scheme"]["reason"] == this_cpu_scheme().reason  # the scheme and CPU it was made for
    src, seg = batch_of([9, 5, 7, 12, 16, 3], seed=3)
    src, seg = src.numpy(), seg.numpy()
    real = seg > 0
    for speed in (0.0, 0.5):
        fp32, _ = run_exported(out, src, seg, speed, 0)
        int8, _ = run_exported(tmp_path / "q", src, seg, speed, 0)
        assert np.isfinite(int8).all() and np.allclose(int8[real].sum(-1), 1, atol=1e-5)
        assert float(np.abs(int8 - fp32).max()) > 0  # quantized for real
        agree = (int8.argmax(-1) == fp32.argmax(-1))[real]
        assert agree.mean() > 0.5, agree.mean()


def test_alibi_tagger_is_refused_in_one_line(tmp_path, capsys):
    model = tiny_model(alibi=True)
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "model.pt", model, model.config, id2label=TAGS, vocab_size=99, seq_length=16,
                    vocab_file="model.vocab.txt")
    (tmp_path / "run" / "model.vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]) + "\n")
    assert main(["export", str(tmp_path / "run" / "model.pt"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "position_bias 'alibi' is not exported" in err, err
    assert not (tmp_path / "o").exists()


def test_a_pre_norm_tagger_exports_exactly(tmp_path):
    """Pre-LN: the final norm applies to the last step's branch input only, as in TokenExit."""
    from uer.config import config_from_dict
    from uer.model_builder import build_model

    torch.manual_seed(3)
    config = config_from_dict({
        "embedding": {"components": ["word", {"name": "pos", "max_seq_length": 64}, "seg"], "emb_size": 32, "dropout": 0.0},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 3, "heads_num": 4, "feedforward_size": 37,
                    "layernorm_positioning": "pre"},
        "target": {"components": [{"name": "token_exit", "branch_size": 16}]},
    })
    model = build_model(config, vocab_size=99, labels_num=7).eval()
    assert model.encoder.block(0).pre_norm
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "model.pt", model, config, id2label=TAGS, vocab_size=99, seq_length=16,
                    vocab_file="model.vocab.txt")
    (tmp_path / "run" / "model.vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]) + "\n")
    assert main(["export", str(tmp_path / "run" / "model.pt"), str(tmp_path / "onnx")]) == 0
    tagger, runner = NerTagger.load(tmp_path / "run" / "model.pt", runtime="eager"), ExportedTagger(tmp_path / "onnx")
    src, seg = batch_of([9, 5, 12])
    for speed in (0.0, 0.9):
        ref = tagger.runner.predict(src, seg, speed=speed)
        probs, exits = runner.predict(src.numpy(), seg.numpy(), speed, 0)
        assert np.array_equal(exits, ref.exit_layer.numpy())
        torch.testing.assert_close(torch.from_numpy(probs), ref.probs, rtol=0, atol=1e-5)
    assert len(set(ref.exit_layer[seg > 0].tolist())) > 1  # some tokens left early at 0.9
