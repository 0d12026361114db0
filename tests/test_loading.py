"""``uer.exit.loading.load_trained``: the one loader behind ``FastBertClassifier.load``,
``NerTagger.load`` and ``python -m uer export`` (bad-inputs.md rows 75-79, 98, 106-107): each bad
file or argument is one clear error naming it, the same through both predictors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_predictor_api import VOCAB, save_model
from uer.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from uer.config import config_from_dict
from uer.exit.loading import is_bare_file_name, load_trained
from uer.fastbert.predictor import FastBertClassifier
from uer.model_builder import build_model
from uer.tagging.predictor import NerTagger

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
CHARS = list("我你他在上的了和是有北京上海江泽民李鹏新华社")


def save_tagger(folder: Path, layers: int = 2, seq_length: int = 16, sure: bool = False, **stored) -> Path:
    """An (untrained) token-exit tagger as run_ner.py writes it: model.pt and model.vocab.txt.
    ``sure``: layer 1's branch is sure of some tokens only (tag 0's logit = 40 tanh(h_0)), so that
    speed and window change which tokens leave there."""
    torch.manual_seed(0)
    config = config_from_dict({
        "embedding": {"components": ["word", {"name": "pos", "max_seq_length": 32}, "seg"], "emb_size": 16},
        "encoder": {"name": "transformer", "hidden_size": 16, "layers_num": layers, "heads_num": 2, "feedforward_size": 24},
        "target": {"components": [{"name": "token_exit", "branch_size": 8}]},
        "tokenizer": {"name": "char"},
    })
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(CHARS)]
    model = build_model(config, vocab_size=len(tokens), labels_num=len(TAGS))
    if sure:
        b = model.target.components["token_exit"].branches[0]
        with torch.no_grad():
            b.dense.weight.zero_(); b.dense.weight[0, 0] = 1.0; b.dense.bias.zero_()
            b.output.weight.zero_(); b.output.weight[0, 0] = 40.0; b.output.bias.zero_()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", model, config, id2label=TAGS, vocab_size=len(tokens), seq_length=seq_length,
                    vocab_file="model.vocab.txt", **stored)
    (folder / "model.vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return folder / "model.pt"


def resume_file(model_path: Path) -> Path:
    """What the shared Trainer writes as ``model.stage1.pt``: the weights plus only its training state."""
    state = read_checkpoint(model_path)
    model = build_model(config_from_dict(state["config"]), vocab_size=state["extra"]["vocab_size"],
                        labels_num=len(state["extra"].get("labels") or state["extra"]["id2label"]))
    path = model_path.with_name("model.stage1.pt")
    save_checkpoint(path, model, model.config, trainer={"step": 4, "signature": {"stage": "stage 1 fine-tune"}})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_model(root / "fastbert"), save_tagger(root / "ner")


def test_one_loader_returns_model_config_extra_and_vocabulary(models):
    fb, ner = models
    trained = load_trained(fb, "run_fastbert.py")
    assert trained.extra["labels"] == ["neg", "neu", "pos"] and trained.vocab_path == fb.parent / "model.vocab.txt"
    assert len(trained.vocab) == trained.extra["vocab_size"] and trained.config is trained.model.config
    assert not trained.model.training
    tagger = load_trained(ner, "run_ner.py")
    assert tagger.extra["id2label"] == TAGS and tagger.vocab.tokens[5] == CHARS[0]
    # the same weights as saved, strictly
    saved = read_checkpoint(ner)["model"]
    for name, value in tagger.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


@pytest.mark.parametrize("load", [FastBertClassifier.load, NerTagger.load], ids=["classifier", "tagger"])
@pytest.mark.parametrize("path", [None, 123, b"model.pt"])
def test_a_path_must_be_a_path(load, path):
    with pytest.raises(TypeError, match=r"^path must be a str or os.PathLike, got "):
        load(path)


def test_the_other_commands_model_is_named(models):
    fb, ner = models
    with pytest.raises(CheckpointError, match=r"was not written by run_ner.py \(no 'id2label' in it\)$"):
        NerTagger.load(fb)
    with pytest.raises(CheckpointError, match=r"was not written by run_fastbert.py \(no 'labels' in it\)$"):
        FastBertClassifier.load(ner)


@pytest.mark.parametrize("which", [0, 1], ids=["classifier", "tagger"])
def test_a_stage_resume_file_is_named_as_one(models, tmp_path, which):
    folder = tmp_path / "run"
    shutil.copytree(models[which].parent, folder)
    stage1 = resume_file(folder / "model.pt")
    load = (FastBertClassifier.load, NerTagger.load)[which]
    with pytest.raises(CheckpointError) as exc:
        load(stage1)
    assert str(exc.value) == (f"{stage1} holds the resume state of a training stage (stage 1 fine-tune), not a trained "
                              "model: load model.pt, which the run writes when it ends")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("load", [FastBertClassifier.load, NerTagger.load], ids=["classifier", "tagger"])
def test_cuda_on_a_cpu_only_machine_is_one_value_error(models, load):
    path = models[0] if load is FastBertClassifier.load else models[1]
    with pytest.raises(ValueError, match=r"^device cuda: CUDA is not available on this machine"):
        load(path, device="cuda")
    with pytest.raises(ValueError, match=r"^device 'tpu': expected cpu, cuda or cuda:N$"):
        load(path, device="tpu")


@pytest.mark.parametrize("vocab_file", ["/etc/hosts", "../fastbert/model.vocab.txt", "sub/model.vocab.txt", "..", ""])
def test_the_vocabulary_must_lie_beside_the_model(models, tmp_path, vocab_file):
    """A checkpoint that points its vocabulary elsewhere is refused, not followed (row 79)."""
    state = read_checkpoint(models[1])
    state["extra"]["vocab_file"] = vocab_file
    folder = tmp_path / "ner"
    folder.mkdir()
    torch.save(state, folder / "model.pt")
    shutil.copy(models[1].parent / "model.vocab.txt", folder / "model.vocab.txt")
    with pytest.raises(CheckpointError, match=r"its vocab_file .* is not a file name beside the model"):
        NerTagger.load(folder / "model.pt")
    # a vocabulary given by the caller is the caller's choice; the checkpoint is still not ours to follow
    with pytest.raises(CheckpointError, match="is not a file name beside the model"):
        NerTagger.load(folder / "model.pt", vocab_path=folder / "model.vocab.txt")


def test_bare_file_names():
    assert is_bare_file_name("model.vocab.txt") and is_bare_file_name("m..txt")
    for bad in ("/abs.txt", "a/b.txt", "a\\b.txt", "..", ".", "", None, 3):
        assert not is_bare_file_name(bad)


def test_a_missing_or_foreign_vocabulary_is_one_line(models, tmp_path):
    shutil.copy(models[0], tmp_path / "model.pt")  # the model without its vocabulary
    with pytest.raises(CheckpointError) as exc:
        FastBertClassifier.load(tmp_path / "model.pt")
    assert str(exc.value) == (f"{tmp_path / 'model.pt'}: its vocabulary {tmp_path / 'model.vocab.txt'} does not exist "
                              "(run_fastbert.py writes it beside the model: copy it there, or pass vocab_path=)")
    with pytest.raises(CheckpointError, match=r"^vocab_path .*nowhere.txt does not exist$"):
        FastBertClassifier.load(tmp_path / "model.pt", vocab_path=tmp_path / "nowhere.txt")
    with pytest.raises(CheckpointError, match=r"has \d+ tokens, the model \d+$"):
        NerTagger.load(models[1], vocab_path=VOCAB)  # another model's vocabulary
    dup = tmp_path / "dup.txt"
    dup.write_text("[PAD]\n[PAD]\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"dup.txt:2: token '\[PAD\]' appears twice"):
        NerTagger.load(models[1], vocab_path=dup)


def test_a_bad_stored_policy_is_refused_at_load(tmp_path):
    with pytest.raises(CheckpointError, match=r"its stored exit_policy is not usable \(.*'nope'"):
        FastBertClassifier.load(save_model(tmp_path / "a", exit_policy="nope"))
    with pytest.raises(CheckpointError, match=r"its stored chosen_speed is not usable \(speed must lie in \[0, 1\]"):
        FastBertClassifier.load(save_model(tmp_path / "b", chosen_speed=3.0))


# ----------------------------------------------------------------------------- NerTagger.predict's arguments
@pytest.fixture(scope="module")
def tagger(models):
    return NerTagger.load(models[1], runtime="eager")


TEXT = "我在北京见到江泽民"


def test_a_bad_item_names_its_index(tagger):
    with pytest.raises(TypeError, match=r"^texts\[1\] is NoneType, expected str$"):
        tagger.predict([TEXT, None])
    with pytest.raises(TypeError, match=r"^texts must be a str or a sequence of str, got int$"):
        tagger.predict(123)


def test_numpy_numbers_and_iterables_are_accepted(tagger):
    expected = tagger.predict([TEXT, "上海"], speed=0.3, window=1)
    assert tagger.predict([TEXT, "上海"], speed=np.float32(0.3), window=np.int64(1), batch_size=np.int64(2)) == expected
    assert tagger.predict((t for t in [TEXT, "上海"]), speed=0.3, window=1) == expected
    assert tagger.predict(np.array([TEXT, "上海"]), speed=0.3, window=1) == expected


@pytest.mark.parametrize("kwargs, error, message", [
    ({"speed": "0.3"}, TypeError, r"^speed must be a number in \[0, 1\]"),
    ({"speed": True}, TypeError, r"^speed must be a number"),
    ({"speed": float("nan")}, ValueError, r"^speed must lie in \[0, 1\]"),
    ({"window": 1.0}, TypeError, r"^window must be an int >= 0, got float"),
    ({"window": -1}, ValueError, r"^window must be >= 0, got -1$"),
    ({"batch_size": 0}, ValueError, r"^batch_size must be >= 1, got 0$"),
    ({"policy": "nope"}, ValueError, r"^policy 'nope': expected one of"),
])
def test_bad_values_name_the_argument(tagger, kwargs, error, message):
    with pytest.raises(error, match=message):
        tagger.predict(TEXT, **{"speed": 0.3, **kwargs})


def test_the_speed_is_checked_once_per_call(tagger, monkeypatch):
    import uer.exit.loading

    calls = []
    real = uer.exit.loading.check_speed
    monkeypatch.setattr(uer.exit.loading, "check_speed", lambda s: calls.append(s) or real(s))
    tagger.predict([TEXT, "上海", "北京"], speed=0.3, batch_size=1)
    assert calls == [0.3]


def test_a_window_wider_than_any_row_is_cut_to_the_row(tagger, monkeypatch):
    """Row 38: a window of 10**9 took seconds per call (its pooling kernel was 2 * 10**9 + 1 wide);
    every window from the row length up gives the same exits, so it is cut there."""
    import torch.nn.functional as F

    texts = [TEXT, "李鹏在上海"]
    expected = tagger.tag([list(t) for t in texts], speed=0.4, window=tagger.seq_length)
    kernels, pool = [], F.max_pool1d
    monkeypatch.setattr(F, "max_pool1d", lambda x, k, **kw: kernels.append(k) or pool(x, k, **kw))
    assert tagger.tag([list(t) for t in texts], speed=0.4, window=10**9) == expected
    assert kernels and max(kernels) <= 2 * tagger.seq_length + 1, kernels  # the cost no longer grows with the window
    assert tagger.tag([list(t) for t in texts], speed=0.4, window=len(TEXT) + 1) == expected


def test_the_tagger_defaults_are_what_the_run_stored(tmp_path):
    """``window``, ``chosen_speed`` and ``exit_policy`` stored by run_ner.py are the defaults."""
    chars = [list(TEXT), list("李鹏在上海上海北京"), list("他和你")]
    stored = NerTagger.load(save_tagger(tmp_path / "a", sure=True, window=1, chosen_speed=0.95, exit_policy="entropy"),
                            runtime="eager")
    plain = NerTagger.load(save_tagger(tmp_path / "b", sure=True), runtime="eager")
    exits = {(s, w): plain.tag(chars, speed=s, window=w)[1] for s in (0.0, 0.95) for w in (0, 1)}
    assert len({str(v) for v in exits.values()}) >= 3  # speed and window both change the exits here
    assert stored.tag(chars) == stored.tag(chars, speed=0.95, window=1) == plain.tag(chars, speed=0.95, window=1)
    assert plain.tag(chars) == plain.tag(chars, speed=0.0, window=0)  # nothing stored: the full model


def test_the_tagger_predicts_with_the_trained_policy(tmp_path):
    """A tagger trained with ``--exit_policy patience`` exits by patience when given no policy:
    at 0.6 on 2 layers patience lets every token leave at layer 1, entropy only the sure ones."""
    chars = [list(TEXT), list("李鹏在上海上海北京")]
    tagger = NerTagger.load(save_tagger(tmp_path / "p", sure=True, exit_policy="patience", chosen_speed=0.6), runtime="eager")
    patience = tagger.tag(chars, speed=0.6, policy="patience")
    assert tagger.tag(chars) == tagger.tag(chars, policy="patience") == patience
    assert all(layer == 1 for row in patience[1] for layer in row)
    assert tagger.tag(chars, speed=0.6, policy="entropy")[1] != patience[1]
    assert tagger.predict(TEXT) == tagger.predict(TEXT, speed=0.6, policy={"name": "patience"})
    with pytest.raises(ValueError, match="chosen under policy patience, not entropy"):
        tagger.predict(TEXT, policy="entropy")


def test_a_seq_length_beyond_the_position_table_is_cut_to_it(tmp_path):
    """Row 36: run_ner.py once saved --seq_length 1000 over a 32-row table; predict then failed on
    any long text. The loader cuts it to the table and long texts are split into rows that fit."""
    tagger = NerTagger.load(save_tagger(tmp_path, seq_length=1000), runtime="eager")
    assert tagger.seq_length == 32
    text = "我在北京见到江泽民" * 20
    assert len(tagger.predict(text, speed=0.5)) == 1
