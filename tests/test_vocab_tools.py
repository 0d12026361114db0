"""``python -m uer vocab build`` and ``python -m uer vocab extend``."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_config
from uer import build_model
from uer.__main__ import main as uer_main
from uer.checkpoint import load_model, read_checkpoint, save_checkpoint
from uer.tokenizers import BertTokenizer, SentencePieceTokenizer, Vocab

DATA = Path(__file__).parent / "data"
CORPUS = [
    "the movie was great and the acting was lovely",
    "the phone is terrible , the battery died again",
    "a boring book with a plain plot",
    "my car is really good , i drive it every day",
    "movies and books and phones and cars",
] * 20
WORDS = "words.txt"


def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("".join(line + "\n" for line in CORPUS))
    return path


def test_build_wordpiece_writes_our_vocab_format(tmp_path, capsys):
    out = tmp_path / "vocab.txt"
    half = tmp_path / "second.txt"
    half.write_text("unbelievable unbelievably believable\n" * 5)
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), str(half), "--size", "120",
                     "--kind", "wordpiece", "--output", str(out), "--lowercase"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    vocab = Vocab.load(out)
    assert vocab.tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and 60 <= len(vocab) <= 120
    assert any(t.startswith("##") for t in vocab.tokens)  # word pieces, not just words
    tok = BertTokenizer(vocab)
    for line in CORPUS[:5]:
        assert vocab.unk_id not in tok.encode(line)  # every character of the corpus is covered
    # an existing output is kept unless --force
    before = out.read_bytes()
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "80", "--kind", "wordpiece",
                     "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "80", "--kind", "wordpiece",
                     "--output", str(out), "--force"]) == 0
    assert len(Vocab.load(out)) <= 80
    # fewer tokens than characters: every character stays (no [UNK] in the corpus), and that is said
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "10", "--kind", "wordpiece",
                     "--output", str(out), "--force"]) == 0
    assert "every character of the corpus is kept" in capsys.readouterr().out


def test_build_sentencepiece(tmp_path, capfd):
    out = tmp_path / "spm.model"
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "40",
                     "--kind", "sentencepiece", "--output", str(out)]) == 0
    tok = SentencePieceTokenizer(out)
    assert len(tok.vocab) == 40 and tok.vocab.tokens[:5] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.decode(tok.encode(CORPUS[0])) == CORPUS[0]
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "60",
                     "--kind", "sentencepiece", "--output", str(tmp_path / "spm.txt")]) == 2
    assert "ends in .model" in capfd.readouterr().err
    assert uer_main(["vocab", "build", "--corpus", str(corpus_file(tmp_path)), "--size", "500",
                     "--kind", "sentencepiece", "--output", str(tmp_path / "big.model")]) == 2
    last = capfd.readouterr().err.strip().splitlines()[-1]  # (the trainer logs to the real stderr first)
    assert last.startswith("python -m uer: error: sentencepiece could not train a 500-piece model") and "too high" in last
    assert not (tmp_path / "big.model").exists()


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "argument --size: expected an integer >= 1, got '0'"),
    (["--kind", "bpe"], "argument --kind: invalid choice: 'bpe'"),
    (["--size", "5"], "--size 5: the 5 special tokens alone take that many"),
])
def test_build_bad_flags_are_one_line(tmp_path, capsys, argv, message):
    base = {"--corpus": str(corpus_file(tmp_path)), "--size": "50", "--kind": "wordpiece", "--output": str(tmp_path / "v.txt")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    assert uer_main(["vocab", "build", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v.txt").exists()


# ----------------------------------------------------------------------------- extend
def base_model(tmp_path: Path) -> Path:
    """A tiny MLM + NSP model (tied decoder) on the FastBERT test vocabulary plus two suffix pieces."""
    folder = tmp_path / "base"
    folder.mkdir()
    tokens = (DATA / "fastbert_vocab.txt").read_text().splitlines() + ["##s", "##ness"]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    torch.manual_seed(0)
    config = tiny_config(targets=["mlm", "nsp"], tokenizer={"name": "bert"})
    model = build_model(config, vocab_size=len(tokens))
    with torch.no_grad():
        model.target.components["mlm"].head.decoder.bias.normal_()
    save_checkpoint(folder / "model.pt", model, config, vocab_size=len(tokens))
    return folder / "model.pt"


def test_extend_adds_rows_from_the_mean_of_the_pieces(tmp_path, capsys):
    path = base_model(tmp_path)
    (tmp_path / WORDS).write_text("cars\nphones\nzzz\n")
    out = tmp_path / "new" / "extended.pt"
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "added 3 tokens" in printed and "zzz" in printed  # only [UNK] pieces: said so
    old_vocab = Vocab.load(path.parent / "vocab.txt")
    new_vocab = Vocab.load(out.with_suffix(".vocab.txt"))
    assert new_vocab.tokens == old_vocab.tokens + ["cars", "phones", "zzz"]
    old, new = read_checkpoint(path)["model"], read_checkpoint(out)["model"]
    words = "embedding.components.word.embedding.weight"
    bias = "target.components.mlm.head.decoder.bias"
    n = len(old_vocab)
    for key in (words, bias):
        assert torch.equal(new[key][:n], old[key])
        i = old_vocab.index
        torch.testing.assert_close(new[key][n], (old[key][i["car"]] + old[key][i["##s"]]) / 2)
        torch.testing.assert_close(new[key][n + 1], (old[key][i["phone"]] + old[key][i["##s"]]) / 2)
        torch.testing.assert_close(new[key][n + 2], old[key][i["[UNK]"]])
    for key in old:
        if key not in (words, bias, "target.components.mlm.head.decoder.weight"):
            assert torch.equal(old[key], new[key]), key
    # the new checkpoint builds (the decoder tied to the grown embedding) and runs a forward
    model, extra = load_model(out)
    assert extra["vocab_size"] == n + 3 and model.target.components["mlm"].head.decoder.weight is model.embedding.word.weight
    tok = BertTokenizer(new_vocab)
    ids = torch.tensor([[new_vocab.cls_id] + tok.encode("my cars and phones") + [new_vocab.sep_id]])
    assert new_vocab.index["cars"] in ids[0].tolist() and new_vocab.index["phones"] in ids[0].tolist()
    seg = torch.ones_like(ids)
    out_ = model({"src": ids, "seg": seg, "tgt_mlm": torch.where(ids == new_vocab.index["cars"], ids, -100),
                  "tgt_nsp": torch.tensor([0])})
    assert torch.isfinite(out_["loss"])
    assert path.read_bytes() == (tmp_path / "base" / "model.pt").read_bytes()  # the input is untouched


@pytest.mark.parametrize("words, message", [
    ("cars\n\nphones\n", "words.txt:2: empty line"),
    ("cars\ncar\n", "words.txt:2: 'car' is already in the vocabulary"),
    ("cars\ncars\n", "words.txt:2: 'cars' is listed twice (first at line 1)"),
    ("two words\n", "words.txt:1: 'two words' holds whitespace"),
    ("Cars\n", "words.txt:1: 'Cars' would still be read as ['car', '##s'] by the bert tokenizer"),
    ("e-mail\n", "words.txt:1: 'e-mail' would still be read as"),
])
def test_extend_refuses_bad_words_with_file_and_line(tmp_path, capsys, words, message):
    path = base_model(tmp_path)
    (tmp_path / WORDS).write_text(words)
    out = tmp_path / "ext.pt"
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".vocab.txt").exists()


def test_extend_never_replaces_the_input_or_an_existing_output(tmp_path, capsys):
    path = base_model(tmp_path)
    (tmp_path / WORDS).write_text("cars\n")
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(path)]) == 2
    assert "is MODEL itself" in capsys.readouterr().err
    (tmp_path / "taken.pt").write_text("mine")
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(tmp_path / "taken.pt")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "taken.pt").read_text() == "mine"


def test_run_fastbert_fine_tunes_the_extended_model(tmp_path, capsys):
    from run_fastbert import main as run_fastbert
    from tests.test_fastbert_cli import TINY_YAML

    path = base_model(tmp_path)
    (tmp_path / WORDS).write_text("cars\nphones\n")
    out = tmp_path / "extended.pt"
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(out)]) == 0
    (tmp_path / "tiny.yaml").write_text(TINY_YAML.replace("target: {components: [mlm]}", "target: {components: [mlm, nsp]}"))
    code = run_fastbert([
        "--config_path", str(tmp_path / "tiny.yaml"), "--pretrained_model_path", str(out),
        "--vocab_path", str(out.with_suffix(".vocab.txt")),
        "--train_path", str(DATA / "fastbert_train.tsv"), "--dev_path", str(DATA / "fastbert_dev.tsv"),
        "--test_path", str(DATA / "fastbert_test.tsv"), "--output_model_path", str(tmp_path / "ft" / "model.pt"),
        "--report_path", str(tmp_path / "report.json"), "--epochs_num", "1", "--distill_epochs_num", "0",
        "--batch_size", "16", "--seq_length", "16", "--branch_size", "16", "--speed", "0", "--timing_samples", "4",
        "--no_progress",
    ])
    assert code == 0, capsys.readouterr().err
    from uer.fastbert.predictor import FastBertClassifier

    clf = FastBertClassifier.load(tmp_path / "ft" / "model.pt", runtime="eager")
    assert len(clf.tokenizer.vocab) == len(Vocab.load(out.with_suffix(".vocab.txt")))
    assert clf.tokenizer.encode("cars") == [clf.tokenizer.vocab.index["cars"]]
    shutil.rmtree(tmp_path / "ft")


def test_pretrain_continues_from_the_extended_model(tmp_path, capsys):
    """preprocess.py with the new vocabulary, then pretrain.py warm-started from the extended checkpoint."""
    import preprocess
    import pretrain

    path = base_model(tmp_path)
    (tmp_path / WORDS).write_text("cars\nphones\n")
    out = tmp_path / "extended.pt"
    assert uer_main(["vocab", "extend", str(path), "--words", str(tmp_path / WORDS), "--output", str(out)]) == 0
    vocab = out.with_suffix(".vocab.txt")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"my {w} is {v} and the {w} is {v}\n" for w in ("cars", "phones", "car") for v in ("good", "bad")) * 8)
    config = tmp_path / "mlm.yaml"
    config.write_text("embedding: {emb_size: 32, components: [word, {name: pos, max_seq_length: 64}, seg]}\n"
                      "encoder: {name: transformer, hidden_size: 32, heads_num: 4, layers_num: 2, feedforward_size: 37}\n"
                      "target: {components: [mlm]}\ntokenizer: {name: bert}\n")
    assert preprocess.main(["--corpus_path", str(corpus), "--data_processor", "mlm", "--vocab_path", str(vocab),
                            "--dataset_path", str(tmp_path / "ds"), "--seq_length", "16", "--no_progress"]) == 0
    assert pretrain.main(["--dataset_path", str(tmp_path / "ds"), "--config_path", str(config), "--vocab_path", str(vocab),
                          "--output_model_path", str(tmp_path / "pt" / "model.pt"), "--pretrained_model_path", str(out),
                          "--total_steps", "2", "--batch_size", "4", "--report_steps", "1", "--no_progress"]) == 0
    state = read_checkpoint(tmp_path / "pt" / "model.pt")
    assert state["model"]["embedding.components.word.embedding.weight"].shape[0] == len(Vocab.load(vocab))
