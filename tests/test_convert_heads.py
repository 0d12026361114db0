"""``python -m uer convert uer2hf`` on task models: a FastBERT classifier and a token tagger go out with
their teacher heads (shipped code, ``trust_remote_code``) and give the same predictions in transformers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from uer.__main__ import main as uer_main  # noqa: E402
from uer.checkpoint import save_checkpoint  # noqa: E402
from uer.config import config_from_dict  # noqa: E402
from uer.model_builder import build_model  # noqa: E402

WORDS = "the a movie film was is great good bad awful not very plot acting boring fun i liked it loved hated".split()
CHARS = list("北京上海天安门人民日报中国我爱你在")
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + CHARS
BASE = {
    "embedding": {"components": ["word", {"name": "pos", "max_seq_length": 40}, "seg"]},
    "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 3, "heads_num": 4, "feedforward_size": 37},
    "tokenizer": {"name": "bert", "do_lower_case": True},
}


def _randomise(model):
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.normal_(0, 0.5)
            else:
                p.normal_(0, 0.3)  # larger than at initialisation, so that the texts' outputs differ clearly
    return model.eval()


def task_checkpoint(folder: Path, target: dict, extra: dict, labels_num: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in TOKENS))
    config = config_from_dict({**BASE, "target": [target]}, "task")
    model = _randomise(build_model(config, vocab_size=len(TOKENS), labels_num=labels_num))
    save_checkpoint(folder / "model.pt", model, config, vocab_size=len(TOKENS), seq_length=32, vocab_file="vocab.txt", **extra)
    return folder / "model.pt"


@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_fastbert_classifier_exports_with_equal_probabilities(tmp_path, capsys, pooling):
    from uer.fastbert.predictor import FastBertClassifier
    from uer.fastbert.data import collate

    labels = ["negative", "neutral", "positive"]
    path = task_checkpoint(tmp_path / "run", {"name": "fastbert", "branch_size": 16, "branch_heads_num": 2, "pooling": pooling},
                           {"labels": labels}, len(labels))
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf")]) == 0
    assert "trust_remote_code=True" in capsys.readouterr().out
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True).eval()
    assert hf.config.id2label == dict(enumerate(labels)) and hf.config.label2id == {k: i for i, k in enumerate(labels)}

    clf = FastBertClassifier.load(path, runtime="eager")
    texts = ["the movie was great", "i hated it , awful acting and a boring plot", "not very good", "fun"]
    want = clf.predict(texts, speed=0)
    encoded = clf.encode(texts)
    batch = collate(encoded, range(len(texts)), clf.tokenizer.vocab.pad_id)
    seg = batch["seg"]
    with torch.no_grad():
        logits = hf(input_ids=batch["src"], attention_mask=(seg > 0).long(), token_type_ids=(seg - 1).clamp_min(0)).logits
    torch.testing.assert_close(logits.softmax(-1), want.probabilities, rtol=1e-5, atol=1e-5)
    assert [hf.config.id2label[i] for i in logits.argmax(-1).tolist()] == want.labels
    assert (want.probabilities - want.probabilities[0]).abs().max() > 1e-3  # not vacuous: the texts differ (100 x the tolerance)


def test_tagger_exports_with_equal_logits_and_tags(tmp_path, capsys):
    from uer.tagging.data import collate, encode_sentences
    from uer.tagging.predictor import NerTagger

    id2label = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    path = task_checkpoint(tmp_path / "run", {"name": "token_exit", "branch_size": 16}, {"id2label": id2label}, len(id2label))
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True).eval()
    assert hf.config.id2label == dict(enumerate(id2label))

    tagger = NerTagger.load(path)
    sentences = [list("我爱北京天安门"), list("人民日报在上海"), list("中国")]
    tags, _ = tagger.tag(sentences, speed=0)
    chunks = encode_sentences(tagger.vocab, sentences, None, 32)
    batch = collate(chunks, range(len(sentences)), tagger.vocab.pad_id)
    seg = batch["seg"]
    with torch.no_grad():
        logits = hf(input_ids=batch["src"], attention_mask=(seg > 0).long(), token_type_ids=torch.zeros_like(seg)).logits
    for row, sentence_tags in enumerate(tags):
        n = len(sentences[row])
        assert [id2label[i] for i in logits[row, 1:n + 1].argmax(-1).tolist()] == sentence_tags
    # the logits themselves, against the uer model's teacher branch on the last layer
    from uer.checkpoint import load_model

    uer_model, _ = load_model(path, labels_num=len(id2label))
    uer_model.eval()
    with torch.no_grad():
        hidden = uer_model.encode(batch["src"], seg)
        want = uer_model.target.components["token_exit"].teacher(hidden)
    real = seg > 0
    torch.testing.assert_close(logits[real], want[real], rtol=1e-5, atol=1e-5)


def test_a_task_model_without_labels_is_refused(tmp_path, capsys):
    path = task_checkpoint(tmp_path / "run", {"name": "fastbert", "branch_size": 16}, {}, 2)
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf")]) == 2
    assert "no label list: not written by run_fastbert.py ('labels')" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_a_plain_tagging_model_is_transformers_token_classifier(tmp_path, capsys):
    """dropout -> linear per token is BertForTokenClassification's own head: no shipped code needed."""
    id2label = ["O", "B-PER", "I-PER"]
    path = task_checkpoint(tmp_path / "run", {"name": "tagging"}, {"id2label": id2label}, len(id2label))
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf")]) == 0
    assert not (tmp_path / "hf" / "modeling_uer_heads.py").exists()
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "BertForTokenClassification" and hf.config.id2label == dict(enumerate(id2label))
    from uer.checkpoint import load_model

    model, _ = load_model(path)
    model.eval()
    ids = torch.tensor([[2, 30, 31, 32, 3, 0], [2, 33, 3, 0, 0, 0]])
    seg = (ids != 0).long()
    with torch.no_grad():
        want = model.target.components["tagging"].logits(model.encode(ids, seg))
        got = hf(input_ids=ids, attention_mask=seg, token_type_ids=torch.zeros_like(ids)).logits
    torch.testing.assert_close(got[seg.bool()], want[seg.bool()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_a_cls_model_is_transformers_sequence_classifier(tmp_path, capsys, arch):
    """pool first -> dense -> tanh -> labels is BERT's pooler + classifier and RoBERTa's classification head."""
    labels = ["no", "yes"]
    path = task_checkpoint(tmp_path / "run", {"name": "cls"}, {"labels": labels}, len(labels))
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf"), "--arch", arch]) == 0
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification"}[arch]
    from uer.checkpoint import load_model

    model, _ = load_model(path)
    model.eval()
    ids = torch.tensor([[2, 30, 31, 32, 3, 1], [2, 33, 3, 1, 1, 1]])  # 1 is RoBERTa's padding id: only after the text
    seg = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        want = model.target.components["cls"].logits(model.encode(ids, seg), seg > 0)
        got = hf(input_ids=ids, attention_mask=seg, token_type_ids=torch.zeros_like(ids)).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a pooling transformers' heads do not have is refused
    path = task_checkpoint(tmp_path / "run2", {"name": "cls", "pooling": "mean"}, {"labels": labels}, len(labels))
    assert uer_main(["convert", "uer2hf", str(path), str(tmp_path / "hf2")]) == 2
    assert "pool 'mean' -> dense -> tanh" in capsys.readouterr().err
