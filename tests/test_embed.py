"""``python -m uer embed``: streamed, batched sentence vectors in a .npy, written atomically."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import tiny_config
from uer import build_model
from uer.__main__ import main as uer_main
from uer.checkpoint import save_checkpoint
from uer.embed import HEADER_SIZE, npy_header
from uer.layers.pooling import pool
from uer.tokenizers import BertTokenizer, Vocab

DATA = Path(__file__).parent / "data"
TEXTS = ["today car is bad", "the phone is terrible", "a lovely meal", "my movie is really great great great",
         "boring book", "okay", "the car is good again and again"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("embed")
    tokens = (DATA / "fastbert_vocab.txt").read_text().splitlines()
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    torch.manual_seed(0)
    config = tiny_config(targets=["mlm"], tokenizer={"name": "bert"})
    model = build_model(config, vocab_size=len(tokens))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # larger than at initialisation: texts get clearly different vectors
    save_checkpoint(folder / "model.pt", model, config, vocab_size=len(tokens))
    return folder / "model.pt"


def reference(model_path: Path, texts, pooling: str, layer: int | None = None) -> np.ndarray:
    """Each text alone (no padding anywhere), pooled by hand."""
    from uer.checkpoint import load_model

    model, _ = load_model(model_path)
    model.eval()
    vocab = Vocab.load(model_path.parent / "vocab.txt")
    tok = BertTokenizer(vocab)
    rows = []
    for text in texts:
        ids = torch.tensor([[vocab.cls_id] + tok.encode(text) + [vocab.sep_id]])
        seg = torch.ones_like(ids)
        with torch.no_grad():
            emb = model.embed(ids, seg)
            hidden = model.encoder(emb, seg) if layer is None else model.encoder.forward_layers(emb, seg)[layer - 1]
        rows.append(pool(hidden, seg > 0, {"cls": "first", "mean": "mean", "max": "max"}[pooling])[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_vectors_equal_each_text_alone_whatever_the_batch(model_path, tmp_path, capsys, pooling):
    tsv = tmp_path / "in.tsv"
    tsv.write_text("label\ttext_a\n" + "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "vecs.npy"
    assert uer_main(["embed", str(model_path), "--input", str(tsv), "--output", str(out), "--pooling", pooling,
                     "--batch_size", "3"]) == 0
    assert f"wrote {len(TEXTS)} x 32 vectors" in capsys.readouterr().out
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    want = reference(model_path, TEXTS, pooling)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(got - got[0]).max() > 1e-2  # not vacuous: the texts' vectors differ
    assert np.load(out, mmap_mode="r").shape == (len(TEXTS), 32)  # the header is a real .npy header


def test_a_text_b_column_makes_pairs(model_path, tmp_path, capsys):
    from uer.embed import Embedder

    pairs = [(TEXTS[i], TEXTS[i + 1]) for i in range(0, 6, 2)]
    tsv = tmp_path / "in.tsv"
    tsv.write_text("text_b\tid\ttext_a\n" + "".join(f"{b}\t{i}\t{a}\n" for i, (a, b) in enumerate(pairs)))
    out = tmp_path / "vecs.npy"
    assert uer_main(["embed", str(model_path), "--input", str(tsv), "--output", str(out), "--batch_size", "2"]) == 0
    embedder = Embedder.load(model_path)
    np.testing.assert_allclose(np.load(out), embedder.embed(pairs), rtol=1e-5, atol=1e-5)
    assert np.abs(np.load(out) - embedder.embed([(a, None) for a, _ in pairs])).max() > 1e-2  # text_b was read


def test_plain_text_from_stdin_and_a_chosen_layer(model_path, tmp_path, capsys, monkeypatch):
    data = "".join(t + "\n" for t in TEXTS).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "vecs.npy"
    assert uer_main(["embed", str(model_path), "--input", "-", "--output", str(out), "--layer", "1", "--batch_size", "2"]) == 0
    np.testing.assert_allclose(np.load(out), reference(model_path, TEXTS, "mean", layer=1), rtol=1e-5, atol=1e-5)
    # stdin is now used up: an empty input is an error, and nothing is written
    assert uer_main(["embed", str(model_path), "--input", "-", "--output", str(tmp_path / "v2.npy"), "--layer", "-2"]) == 2
    assert "<stdin>: empty input" in capsys.readouterr().err and not (tmp_path / "v2.npy").exists()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert uer_main(["embed", str(model_path), "--input", "-", "--output", str(tmp_path / "v2.npy"), "--layer", "-2"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v2.npy"), np.load(out), rtol=0, atol=0)  # -2 of 2 layers = layer 1


def test_header_is_fixed_size_and_valid_for_any_row_count():
    for rows in (0, 1, 10**12):
        header = npy_header(rows, 384)
        assert len(header) == HEADER_SIZE
        buf = io.BytesIO(header)
        version = np.lib.format.read_magic(buf)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        assert version == (1, 0)
        assert (shape, fortran, dtype) == ((rows, 384), False, np.dtype("<f4"))


def test_blank_lines_at_the_end_are_not_texts(model_path, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a lovely meal\nboring book\n\n\n")
    assert uer_main(["embed", str(model_path), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "v.npy")]) == 0
    assert np.load(tmp_path / "v.npy").shape == (2, 32)


def test_existing_output_is_kept_unless_forced(model_path, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a lovely meal\n")
    out = tmp_path / "vecs.npy"
    out.write_bytes(b"mine")
    assert uer_main(["embed", str(model_path), "--input", str(tmp_path / "in.txt"), "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"mine"
    assert uer_main(["embed", str(model_path), "--input", str(tmp_path / "in.txt"), "--output", str(out), "--force"]) == 0
    assert np.load(out).shape == (1, 32)


@pytest.mark.parametrize("content, argv, message", [
    ("a lovely meal\n\nboring book\n", [], "in.txt:2: empty line"),
    ("label\ttext_a\n1\tfine\n0\n", [], "in.txt:3: 1 columns, the header has 2"),
    ("fine\n", ["--layer", "3"], "--layer 3: the model has 2 layers"),
    ("fine\n", ["--layer", "0"], "--layer 0: the model has 2 layers"),
    ("fine\n", ["--seq_length", "100"], "--seq_length 100 is longer than the 64 positions the model has"),
    ("fine\n", ["--seq_length", "3"], "--seq_length 3 is too short"),
    ("fine\n", ["--batch_size", "0"], "argument --batch_size: expected an integer >= 1, got '0'"),
    ("fine\n", ["--pooling", "sum"], "argument --pooling: invalid choice: 'sum'"),
    ("", [], "in.txt: empty input"),
    (b"caf\xe9\n", [], "in.txt:1: not UTF-8 text"),
])
def test_bad_input_is_one_line_and_writes_nothing(model_path, tmp_path, capsys, content, argv, message):
    path = tmp_path / "in.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "vecs.npy"
    assert uer_main(["embed", str(model_path), "--input", str(path), "--output", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".vecs.npy.*"))  # no partial file left behind
