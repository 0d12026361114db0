"""Word-level tagging: CoNLL-form input, WordPiece sub-tokens (the first one carries the word's tag),
predictions mapped back to words; ``run_ner.py`` end to end on English words with ``--crf``; the
export of a word-level tagger; bad values in one line."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from uer.tagging.data import (IGNORE, NerDataError, assemble, data_format, encode_sentences, pick, read_conll,
                              read_label2id, word_pieces)
from uer.tokenizers import Vocab

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
PIECES = ["john", "smith", "lives", "in", "new", "york", "and", "works", "at", "ac", "##me", "corp", "the", "city",
          "is", "big", "mary", "##land", "pa", "##ris", ".", ","]


def write_vocab(path: Path) -> Vocab:
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PIECES]) + "\n", encoding="utf-8")
    return Vocab.load(path)


def test_read_conll_sentences_docstart_and_four_columns(tmp_path):
    label2id = {t: i for i, t in enumerate(TAGS)}
    f = tmp_path / "a.conll"
    f.write_text("-DOCSTART- -X- -X- O\n\nJohn NNP B-NP B-PER\nlives VBZ B-VP O\n\n\nin\tO\nParis B-LOC\n\n",
                 encoding="utf-8")
    data = read_conll(f, label2id)
    assert data.chars == [["John", "lives"], ["in", "Paris"]] and data.tags == [["B-PER", "O"], ["O", "B-LOC"]]
    assert data.data_format == "conll"
    assert read_conll(f, None).tags is None


def test_bad_conll_lines_name_file_and_line(tmp_path):
    label2id = {t: i for i, t in enumerate(TAGS)}
    f = tmp_path / "bad.conll"
    f.write_text("John B-PER\nlives\n\nin O\n", encoding="utf-8")
    with pytest.raises(NerDataError, match=rf"^{f}:2: 'lives' is not 'word tag'"):
        read_conll(f, label2id)
    f.write_text("John B-XYZ\n\nin O\nParis B-LOC\n", encoding="utf-8")
    with pytest.raises(NerDataError, match=rf"^{f}:1: unknown tag 'B-XYZ'"):
        read_conll(f, label2id)
    data = read_conll(f, label2id, skip_malformed=True)  # the bad line's whole sentence goes
    assert data.chars == [["in", "Paris"]] and data.skipped[0][0] == 1
    f.write_text("\n\n-DOCSTART- O\n", encoding="utf-8")
    with pytest.raises(NerDataError, match="no usable sentences"):
        read_conll(f, label2id)


def test_format_from_the_extension_or_the_flag():
    assert data_format("x/train.tsv", None) == "tsv" and data_format("eng.train.conll", None) == "conll"
    assert data_format("eng.testa.txt", None) == "conll" and data_format("a.tsv", "conll") == "conll"
    with pytest.raises(NerDataError, match=r"cannot tell its format from the extension '\.json'.*--data_format"):
        data_format("train.json", None)
    with pytest.raises(NerDataError, match="--data_format 'xml'"):
        data_format("train.tsv", "xml")


def test_a_file_with_uers_tsv_header_is_tsv_whatever_its_extension(tmp_path):
    for name in ("train.txt", "train.data"):
        f = tmp_path / name
        f.write_text("\ufefftext_a\tlabel\n我 在\tO O\n", encoding="utf-8")
        assert data_format(f, None) == "tsv"
    f = tmp_path / "train.txt"
    f.write_text("John B-PER\n", encoding="utf-8")
    assert data_format(f, None) == "conll" and data_format(f, "tsv") == "tsv"


def test_wordpiece_first_subtoken_carries_the_tag(tmp_path):
    vocab = write_vocab(tmp_path / "v.txt")
    pieces = word_pieces(vocab, "bert")
    assert pieces("Acme") == [vocab.index["ac"], vocab.index["##me"]] and pieces("zzz") == [vocab.unk_id]
    words = [["John", "Smith", "lives", "in", "Maryland", "."], ["Acme", "Corp", "."]]
    tags = [[1, 2, 0, 0, 3, 0], [5, 6, 0]]
    chunks = encode_sentences(vocab, words, tags, 6, pieces)  # 5 sub-tokens per row: whole words only
    # sentence 0: john smith lives in | mary ##land .   (Maryland does not fit the first row)
    assert [len(r) for r in chunks.ids] == [5, 4, 5] and chunks.offset == [0, 4, 0] and chunks.sentence == [0, 0, 1]
    assert chunks.ids[1] == [vocab.cls_id, vocab.index["mary"], vocab.index["##land"], vocab.index["."]]
    assert chunks.tags[1] == [IGNORE, 3, IGNORE, 0] and chunks.heads[1] == [1, 3]
    assert chunks.tags[2] == [IGNORE, 5, IGNORE, 6, 0] and chunks.heads[2] == [1, 3, 4]
    # a row's values at its heads, put back together: one per word
    per_row = [pick(list(range(len(r))), chunks.units(i)) for i, r in enumerate(chunks.ids)]
    assert assemble(chunks, per_row) == [[1, 2, 3, 4, 1, 3], [1, 3, 4]]
    # a word longer than a row keeps its first pieces (its tag on the first), and the next word moves on
    long = encode_sentences(vocab, [["Acmememe", "Paris"]], [[5, 3]], 4, pieces)  # ac ##me ##me ##me: 4 pieces, room 3
    ac, me, pa, ris = (vocab.index[t] for t in ("ac", "##me", "pa", "##ris"))
    assert long.ids == [[vocab.cls_id, ac, me, me], [vocab.cls_id, pa, ris]] and long.tags[0] == [IGNORE, 5, IGNORE, IGNORE]
    # characters: a Chinese word-level set with a char vocabulary
    chars = word_pieces(vocab, "char")
    assert chars("in") == [vocab.unk_id, vocab.unk_id] and chars(".") == [vocab.index["."]]  # no 'i', no 'n' alone
    with pytest.raises(NerDataError, match="tokenizer 'sentencepiece' cannot split words"):
        word_pieces(vocab, "sentencepiece")


def english_dataset(root: Path) -> None:
    rng = random.Random(0)
    ents = [(["John", "Smith"], "PER"), (["Mary"], "PER"), (["New", "York"], "LOC"), (["Paris"], "LOC"),
            (["Maryland"], "LOC"), (["Acme", "Corp"], "ORG")]
    filler = ["lives", "in", "and", "works", "at", "the", "city", "is", "big", ",", "."]

    def sentence():
        lines = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.4:
                words, kind = rng.choice(ents)
                lines += [f"{w} {'B' if i == 0 else 'I'}-{kind}" for i, w in enumerate(words)]
            else:
                lines.append(f"{rng.choice(filler)} O")
        return "\n".join(lines) + "\n\n"

    for name, n in (("train", 48), ("dev", 12), ("test", 12)):
        (root / f"{name}.conll").write_text("-DOCSTART- O\n\n" + "".join(sentence() for _ in range(n)), encoding="utf-8")
    (root / "label2id.json").write_text(json.dumps({t: i for i, t in enumerate(TAGS)}))
    write_vocab(root / "vocab.txt")
    (root / "cfg.yaml").write_text(
        "embedding:\n  components: [word, {name: pos, max_seq_length: 32}, seg]\n  emb_size: 16\n"
        "encoder: {name: transformer, hidden_size: 16, layers_num: 2, heads_num: 2, feedforward_size: 24}\n"
        "target:\n  components: [mlm]\ntokenizer: {name: bert}\n", encoding="utf-8")


def args(root: Path, *extra: str) -> list[str]:
    return ["--config_path", str(root / "cfg.yaml"), "--vocab_path", str(root / "vocab.txt"),
            "--train_path", str(root / "train.conll"), "--dev_path", str(root / "dev.conll"),
            "--test_path", str(root / "test.conll"), "--label2id_path", str(root / "label2id.json"),
            "--output_model_path", str(root / "out" / "model.pt"), "--epochs_num", "2", "--distill_epochs_num", "1",
            "--batch_size", "8", "--seq_length", "8", "--learning_rate", "3e-3", "--timing_samples", "0",
            "--no_progress", "--no_plot", "--threads", "1", "--speed", "0,0.5", *extra]


def test_run_ner_on_english_words_with_a_crf(tmp_path, capsys):
    import run_ner
    from uer.__main__ import main as uer_main
    from uer.tagging import NerTagger

    english_dataset(tmp_path)
    assert run_ner.main(args(tmp_path, "--crf")) == 0
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    assert {"teacher_f1", "teacher_crf_f1", "teacher_crf_precision", "teacher_crf_recall"} <= set(report)
    assert 0.0 <= report["teacher_crf_f1"] <= 1.0 and report["rows"][0]["f1"] == report["teacher_f1"]
    assert "full model with its CRF: entity F1" in capsys.readouterr().out
    # predictions in the input's format: one line per word, the test's words in order
    gold = [line.split() for line in (tmp_path / "test.conll").read_text().splitlines()[2:]]
    for name in ("speed_0.00.conll", "speed_0.50.conll", "full_model.conll", "full_model_crf.conll"):
        pred = [line.split() for line in (tmp_path / "out" / "model.predictions" / name).read_text().splitlines()]
        assert [p[:1] for p in pred] == [g[:1] for g in gold] and all(len(p) in (0, 2) for p in pred), name
        assert {p[1] for p in pred if p} <= set(TAGS)
    # the API tags words: an entity spans whole words of the text as given
    tagger = NerTagger.load(tmp_path / "out" / "model.pt", runtime="eager")
    text = "John  Smith lives in New York ."
    (entities,) = tagger.predict(text, speed=0.0)
    for e in entities:
        assert text[e.start:e.end] == e.text and not e.text.startswith(" ") and e.start in (0, 6, 12, 18, 21, 25, 30)
    tags, exits = tagger.tag([text.split()], speed=0.5)
    assert len(tags[0]) == len(exits[0]) == 7
    # `uer predict` reads the words too (it once fed a word-level tagger one character a word)
    from uer.predict import load_predictor

    (got,) = load_predictor(tmp_path / "out" / "model.pt", runtime="eager").predict([text], speed=0.5)
    assert got["entities"] == [dataclasses.asdict(e) for e in tagger.predict(text, speed=0.5)[0]]
    assert got["mean_exit_layer"] == sum(exits[0]) / 7
    # the export states the word-level tokenization
    assert uer_main(["export", str(tmp_path / "out" / "model.pt"), str(tmp_path / "onnx")]) == 0
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["tokenization"]["unit"] == "word" and "FIRST sub-token" in manifest["tokenization"]["tags"]


def test_bad_data_flags_are_one_line_before_training(tmp_path, capsys):
    import run_ner

    english_dataset(tmp_path)
    assert run_ner.main(args(tmp_path, "--data_format", "xml")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_ner.py: error: argument --data_format: invalid choice: 'xml'") and "\n" not in err
    (tmp_path / "train.json").write_text((tmp_path / "train.conll").read_text())
    argv = args(tmp_path)
    argv[argv.index("--train_path") + 1] = str(tmp_path / "train.json")
    assert run_ner.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot tell its format from the extension '.json'" in err and "\n" not in err
    (tmp_path / "test.tsv").write_text("text_a\tlabel\n我\tO\n", encoding="utf-8")
    argv = args(tmp_path)
    argv[argv.index("--test_path") + 1] = str(tmp_path / "test.tsv")
    assert run_ner.main(argv) == 2
    assert "of different formats (--train_path conll, --dev_path conll, --test_path tsv)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written by any of the refused runs
