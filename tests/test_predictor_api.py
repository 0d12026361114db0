"""``FastBertClassifier``'s contract with its callers (bad-inputs.md rows 177-195): a string is one
text; a wrong kind of argument is a TypeError and a bad value a ValueError, each naming the
argument (and a text's index); nothing returns garbage."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from uer import build_model

from tests.helpers import tiny_config
from uer.checkpoint import save_checkpoint
from uer.exit.pays import ExitPlan
from uer.fastbert.evaluate import PLAN_SPEEDS
from uer.fastbert.predictor import FastBertClassifier

DATA = Path("tests/data")
VOCAB = DATA / "fastbert_vocab.txt"
LABELS = ["neg", "neu", "pos"]


def save_model(folder: Path, pair: bool | None = False, seq_length: int = 16, legacy: bool = False,
               layers: int = 2, **stored) -> Path:
    """An (untrained) FastBERT checkpoint as run_fastbert.py writes it; ``legacy``: as it did before
    it recorded ``labels_num`` and ``pair``; ``stored``: more of what a run stores (``exit_policy``,
    ``chosen_speed``)."""
    torch.manual_seed(0)
    config = tiny_config(encoder={"layers_num": layers}).with_target({"name": "fastbert", "branch_size": 16})
    vocab_size = len(VOCAB.read_text().splitlines())
    model = build_model(config, vocab_size=vocab_size, labels_num=len(LABELS))
    extra = {"labels": LABELS, "vocab_size": vocab_size, "seq_length": seq_length, "vocab_file": "model.vocab.txt"}
    if not legacy:
        extra.update(labels_num=len(LABELS), pair=pair)
    extra.update(stored)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", model, config, **extra)
    shutil.copy(VOCAB, folder / "model.vocab.txt")
    return folder / "model.pt"


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return FastBertClassifier.load(save_model(tmp_path_factory.mktemp("single")), runtime="eager")


@pytest.fixture(scope="module")
def pair_clf(tmp_path_factory):
    return FastBertClassifier.load(save_model(tmp_path_factory.mktemp("pair"), pair=True))


def test_a_string_is_one_text_not_its_characters(clf):
    one = clf.predict("the movie was great", speed=0.5)
    assert len(one.labels) == 1 and one.probabilities.shape == (1, 3) and len(one.exit_layers) == 1
    listed = clf.predict(["the movie was great"], speed=0.5)
    assert one.labels == listed.labels and one.exit_layers == listed.exit_layers
    torch.testing.assert_close(one.probabilities, listed.probabilities)


def test_iterables_and_empty_input_still_work(clf):
    texts = ["my car is terrible", "this meal is okay"]
    expected = clf.predict(texts, speed=0.3)
    assert clf.predict((t for t in texts), speed=0.3).labels == expected.labels
    assert clf.predict(np.array(texts), speed=0.3).labels == expected.labels
    empty = clf.predict([], speed=0.5)
    assert empty.labels == [] and empty.probabilities.shape == (0, 3)


@pytest.mark.parametrize("texts, kind", [(None, "NoneType"), (123, "int"), (b"hello", "bytes"), (4.5, "float")])
def test_texts_of_the_wrong_kind_are_a_type_error_naming_the_argument(clf, texts, kind):
    with pytest.raises(TypeError, match=rf"^texts must be a str or a sequence of str .*got {kind}$"):
        clf.predict(texts, speed=0.5)


@pytest.mark.parametrize("texts, index, kind", [
    ([123], 0, "int"), (["ok", None], 1, "NoneType"), ([b"hello"], 0, "bytes"), (["a", "b", 3.0], 2, "float"),
])
def test_an_item_of_the_wrong_kind_is_a_type_error_naming_its_index_and_type(clf, texts, index, kind):
    with pytest.raises(TypeError, match=rf"^texts\[{index}\] is {kind}, expected str$"):
        clf.predict(texts, speed=0.5)


@pytest.mark.parametrize("texts, where", [([""], "texts[0]"), (["fine", "   \t "], "texts[1]")])
def test_an_empty_text_is_a_value_error_naming_its_index(clf, texts, where):
    with pytest.raises(ValueError, match="^" + re.escape(where) + " is empty"):
        clf.predict(texts, speed=0.5)


@pytest.mark.parametrize("speed", ["0.5", True, False, [0.5]])  # None: the stored speed
def test_speed_must_be_a_real_number(clf, speed):
    with pytest.raises(TypeError, match="^speed must be a number in \\[0, 1\\]"):
        clf.predict(["hi"], speed=speed)


@pytest.mark.parametrize("speed", [2, -0.1, math.nan, math.inf])
def test_speed_must_lie_in_0_1(clf, speed):
    with pytest.raises(ValueError, match="^speed must lie in \\[0, 1\\]"):
        clf.predict(["hi"], speed=speed)


def test_numpy_numbers_are_accepted(clf):
    a = clf.predict(["hi there"], speed=np.float32(0.5), batch_size=np.int64(2))
    b = clf.predict(["hi there"], speed=0.5, batch_size=2)
    assert a.labels == b.labels and a.exit_layers == b.exit_layers


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_a_value_error_not_garbage(clf, batch_size):
    with pytest.raises(ValueError, match=f"^batch_size must be >= 1, got {batch_size}$"):
        clf.predict(["hi", "there"], speed=0.5, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1.5, "2", True, None])
def test_batch_size_must_be_an_int(clf, batch_size):
    with pytest.raises(TypeError, match="^batch_size must be an int >= 1"):
        clf.predict(["hi", "there"], speed=0.5, batch_size=batch_size)


def test_an_unknown_exit_policy_is_a_value_error_listing_the_valid_ones(clf):
    with pytest.raises(ValueError, match="^policy 'nope': expected one of .*entropy"):
        clf.predict(["hi"], speed=0.5, policy="nope")
    with pytest.raises(ValueError, match="'nope'"):
        clf.predict(["hi"], speed=0.5, policy={"name": "nope"})
    for bad in (3, ["entropy"]):
        with pytest.raises(TypeError, match="^policy must be a str"):
            clf.predict(["hi"], speed=0.5, policy=bad)
    # None: the stored policy, entropy for a model that stored none
    assert clf.predict(["hi"], speed=0.5, policy="entropy").labels == clf.predict(["hi"], speed=0.5).labels


def test_a_policy_is_a_name_a_spec_or_an_object(clf):
    from uer.exit.policies import resolve

    texts = ["the movie was great", "ok", "my car is terrible today"]
    expected = clf.predict(texts, speed=0.6, policy="topk_entropy")
    for same in ({"name": "topk_entropy", "k": 2}, resolve("topk_entropy")):
        out = clf.predict(texts, speed=0.6, policy=same)
        assert out.exit_layers == expected.exit_layers
        torch.testing.assert_close(out.probabilities, expected.probabilities, rtol=0, atol=0)


def test_the_trained_policy_and_chosen_speed_are_the_defaults(tmp_path):
    """A model trained with patience and a chosen speed 0.9 predicts with both when given neither.
    On this untrained 2-layer model patience at 0.9 (t = 0) lets every text leave at layer 1, while
    entropy at 0.9 keeps them all (near-uniform outputs), so ignoring either default shows."""
    clf = FastBertClassifier.load(save_model(tmp_path, exit_policy="patience", chosen_speed=0.9), runtime="eager")
    texts = ["the movie was great", "ok", "my car is terrible today"]
    default = clf.predict(texts)
    patience = clf.predict(texts, speed=0.9, policy="patience")
    assert default.exit_layers == patience.exit_layers == [1, 1, 1]
    torch.testing.assert_close(default.probabilities, patience.probabilities, rtol=0, atol=0)
    assert clf.predict(texts, speed=0.9, policy="entropy").exit_layers == [2, 2, 2]
    assert clf.predict(texts, policy="patience").exit_layers == [1, 1, 1]  # the same policy: the chosen speed holds
    assert clf.predict(texts, speed=0.0).exit_layers == [2, 2, 2]  # a speed of the caller's wins
    # the chosen speed belongs to patience: another policy needs a speed of its own
    with pytest.raises(ValueError, match=r"^speed=None means the speed chosen in training \(0\.9\), which was chosen "
                                         r"under policy patience, not entropy: give a speed"):
        clf.predict(texts, policy="entropy")
    encoded = clf.encode(texts)
    assert clf.predict_encoded(encoded).exit_layer.tolist() == [1, 1, 1]


def test_a_stored_policy_spec_and_no_chosen_speed(tmp_path):
    """``exit_policy`` stored as a spec works; no chosen speed means speed 0, the full model."""
    clf = FastBertClassifier.load(save_model(tmp_path, exit_policy={"name": "topk_entropy", "k": 3}, chosen_speed=None),
                                  runtime="eager")
    texts = ["the movie was great", "ok"]
    assert clf.predict(texts).exit_layers == [2, 2]
    full = clf.predict(texts, speed=0.0, policy="entropy")
    torch.testing.assert_close(clf.predict(texts).probabilities, full.probabilities, rtol=0, atol=0)
    assert clf.predict(texts, speed=1.0).exit_layers == [1, 1]


def test_tuples_must_be_pairs_and_match_the_model(clf, pair_clf):
    with pytest.raises(ValueError, match=r"^texts\[0\] is a \(text_a, text_b\) pair, but this model classifies single texts$"):
        clf.predict([("a", "b")], speed=0.5)
    for bad, n in (([("a", "b", "c")], 3), ([("a",)], 1)):
        with pytest.raises(ValueError, match=rf"^texts\[0\] is a tuple of {n}; expected a str or a \(text_a, text_b\) pair$"):
            pair_clf.predict(bad, speed=0.5)
    with pytest.raises(ValueError, match=r"^texts\[1\] is one text, but this model classifies \(text_a, text_b\) pairs$"):
        pair_clf.predict([("a", "b"), "c"], speed=0.5)
    with pytest.raises(TypeError, match=r"^texts\[0\]\[1\] is int, expected str$"):
        pair_clf.predict([("a", 2)], speed=0.5)
    assert len(pair_clf.predict([("the car", "is bad")], speed=0.5).labels) == 1


@pytest.mark.parametrize("path", [None, 123, b"model.pt"])
def test_load_needs_a_path(path):
    with pytest.raises(TypeError, match="^path must be a str or os.PathLike"):
        FastBertClassifier.load(path)


def test_an_older_model_with_a_seq_length_beyond_its_position_table_loads_and_truncates(tmp_path):
    """Saved before labels_num/pair were recorded, with seq_length 100000 (the table holds 64):
    it loads through uer.checkpoint.load_model and long texts are cut to the table."""
    clf = FastBertClassifier.load(save_model(tmp_path, seq_length=100000, legacy=True))
    assert clf.seq_length == 64 and clf.pair is None
    out = clf.predict(["word " * 2000, "a" * 10000], speed=0.5)
    assert len(out.labels) == 2 and set(out.exit_layers) <= {1, 2}


def test_a_model_trained_with_patience_predicts_with_patience(tmp_path, capsys):
    """Through run_fastbert.py itself: ``--exit_policy patience`` is stored with the speed the run
    chose, and ``predict(texts)`` is ``predict(texts, speed=<chosen>, policy="patience")``."""
    import run_fastbert
    from uer.checkpoint import read_checkpoint

    (tmp_path / "tiny.yaml").write_text(
        "embedding:\n  emb_size: 32\n  components: [word, {name: pos, max_seq_length: 64}, seg]\n"
        "encoder: {name: transformer, hidden_size: 32, layers_num: 3, heads_num: 4, feedforward_size: 37}\n"
        "target: {components: [mlm]}\ntokenizer: {name: bert}\n")
    model_path = tmp_path / "out" / "model.pt"
    assert run_fastbert.main([
        "--config_path", str(tmp_path / "tiny.yaml"), "--vocab_path", str(VOCAB),
        "--train_path", str(DATA / "fastbert_train.tsv"), "--dev_path", str(DATA / "fastbert_dev.tsv"),
        "--test_path", str(DATA / "fastbert_test.tsv"), "--output_model_path", str(model_path),
        "--epochs_num", "1", "--distill_epochs_num", "1", "--batch_size", "16", "--seq_length", "16",
        "--branch_size", "16", "--speed", "0,0.5,1", "--exit_policy", "patience", "--timing_samples", "2", "--runtime", "eager",
        "--no_progress", "--no_plot", "--threads", "1",
    ]) == 0
    extra = read_checkpoint(model_path)["extra"]
    assert extra["exit_policy"] == "patience" and extra["chosen_speed"] in (0.0, 0.5, 1.0)
    clf = FastBertClassifier.load(model_path, runtime="eager")
    texts = ["the movie was really great today", "my car is terrible", "this meal is okay", "ok"]
    default = clf.predict(texts)
    patience = clf.predict(texts, speed=extra["chosen_speed"], policy="patience")
    assert default.exit_layers == patience.exit_layers and default.labels == patience.labels
    torch.testing.assert_close(default.probabilities, patience.probabilities, rtol=0, atol=0)
    # at 0.5 on 3 layers patience waits for one agreeing layer: nobody leaves at layer 1, as entropy may
    assert min(clf.predict(texts, speed=0.5, policy="patience").exit_layers) >= 2
    # the exit plan (early exit only where it pays) was made under patience and is used as stored, never
    # re-measured at load; wherever it says "full depth" predict is the full model, elsewhere the policy
    kept = ExitPlan.from_dict(extra["exit_plan"])
    assert kept.profile.policy == {"name": "patience"} and kept.profile.speeds == PLAN_SPEEDS
    assert clf.runner.exit_plan == kept and kept.from_speed in (None, *PLAN_SPEEDS)
    always = FastBertClassifier.load(model_path, runtime="eager", exit_plan="off")
    assert always.runner.exit_plan is None
    full = clf.predict(texts, speed=0.0)
    for speed in (0.3, 0.5, 1.0):
        got, policy_says = clf.predict(texts, speed=speed), always.predict(texts, speed=speed)
        expected = policy_says if kept.steps_at(speed) else full
        assert got.exit_layers == expected.exit_layers, (speed, kept.from_speed)
        torch.testing.assert_close(got.probabilities, expected.probabilities, rtol=1e-5, atol=1e-6)
    report = json.loads((model_path.parent / "model.report.json").read_text())
    assert report["exit_plan"] == extra["exit_plan"]
