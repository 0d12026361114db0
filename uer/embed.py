"""``python -m uer embed MODEL --input FILE --output FILE.npy``: one vector per text, streamed.

    python -m uer embed out/model.pt --input texts.tsv --output vecs.npy --pooling mean --layer 4
    cat lines.txt | python -m uer embed out/model.pt --input - --output vecs.npy

The input is a TSV with a ``text_a`` column (and ``text_b`` for pairs) or plain text, one per line
(``-`` reads stdin). Texts are read, encoded and written batch by batch, so memory does not grow
with the file. The ``.npy`` is written to a temporary file with its header first (the row count
filled in at the end) and renamed into place when complete: an interrupted run leaves no output,
and an existing output is replaced only with ``--force``.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator

from uer.config import MIN_SEQ_LENGTH
from uer.utils.cli import UsageError, positive_int

POOLINGS = {"cls": "first", "mean": "mean", "max": "max"}  # CLI name -> uer.layers.pooling kind


class EmbedError(ValueError):
    """Options, or a model, that cannot embed; the message names which (a bad input line is uer.predict's InputError)."""


# ----------------------------------------------------------------------------- input
def read_texts(stream: IO[bytes], name: str) -> Iterator[tuple[str, str | None]]:
    """``(text_a, text_b or None)`` per line of a binary stream, lazily, read as ``uer predict``
    reads (:class:`uer.predict.Inputs`: a TSV with a ``text_a`` (and ``text_b``) column, or one
    text a line); a bad line is an :class:`~uer.predict.InputError` naming ``name:line``."""
    from uer.predict import Inputs

    for row in Inputs(stream, name, pair=None):
        yield (row.item, None) if isinstance(row.item, str) else row.item


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------------- the model
class Embedder:
    """A uer model as a sentence encoder: texts -> (N, H) float32 rows.

        emb = Embedder.load("out/model.pt", pooling="mean")
        vectors = emb.embed([("a text", None), ("another", None)])       # numpy (2, H)
    """

    def __init__(self, model, tokenizer, pooling: str = "mean", layer: int | None = None, seq_length: int | None = None) -> None:
        if pooling not in POOLINGS:
            raise EmbedError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        layers = model.encoder.layers_num
        if layer is not None and not (1 <= layer <= layers or -layers <= layer <= -1):
            raise EmbedError(f"--layer {layer}: the model has {layers} layers (1..{layers}, or -1..-{layers} from the top)")
        longest = model.embedding.max_seq_length
        if seq_length is None:  # 128, or fewer if the model has fewer positions
            seq_length = min(128, longest) if longest is not None else 128
        if seq_length < MIN_SEQ_LENGTH:
            raise EmbedError(f"--seq_length {seq_length} is too short: [CLS] text [SEP] needs at least {MIN_SEQ_LENGTH}")
        if longest is not None and seq_length > longest:
            raise EmbedError(f"--seq_length {seq_length} is longer than the {longest} positions the model has")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pooling, self.seq_length = pooling, seq_length
        self.layer = None if layer is None else (layer - 1 if layer > 0 else layers + layer)  # 0-based
        self.dim = model.encoder.output_size

    @classmethod
    def load(cls, path: str | Path, vocab_path: str | Path | None = None, **options) -> "Embedder":
        """Any uer checkpoint with its vocabulary: ``vocab_path``, else the file beside it, else the config's."""
        from uer.checkpoint import load_model
        from uer.tokenizers import build_tokenizer

        model, extra = load_model(path)
        tok = model.config.tokenizer
        beside = Path(path).parent / (extra.get("vocab_file") or {"bytelevel_bpe": "tokenizer.json"}.get(tok.name, "vocab.txt"))
        if vocab_path is None and tok.name != "sentencepiece" and beside.is_file():
            vocab_path = beside
        try:
            tokenizer = build_tokenizer(tok, vocab_path=vocab_path) if vocab_path is not None else build_tokenizer(tok)
        except (ValueError, FileNotFoundError) as exc:  # a vocabulary that is missing or does not load
            raise EmbedError(f"{path}: its tokenizer: {exc}") from None
        if len(tokenizer.vocab) != model.embedding.word.num_embeddings:
            raise EmbedError(f"the vocabulary {tokenizer.vocab.source} has {len(tokenizer.vocab)} tokens, "
                             f"the model {model.embedding.word.num_embeddings}")
        return cls(model, tokenizer, **options)

    def embed(self, texts: list[tuple[str, str | None]]):
        """One batch -> numpy (len(texts), H) float32."""
        import torch

        from uer.data.loader import pad_batch
        from uer.fastbert.data import encode_texts
        from uer.layers.pooling import pool

        ids, segs = encode_texts(self.tokenizer, texts, self.seq_length)
        src, seg = pad_batch(ids, self.tokenizer.vocab.pad_id), pad_batch(segs, 0)
        with torch.inference_mode():
            emb = self.model.embed(src, seg)
            if self.layer is None:
                hidden = self.model.encoder(emb, seg)
            else:
                hidden = self.model.encoder.forward_layers(emb, seg)[self.layer]
            vectors = pool(hidden, seg > 0, POOLINGS[self.pooling])
        return vectors.float().numpy()

    def embed_stream(self, texts: Iterable[tuple[str, str | None]], batch_size: int) -> Iterator:
        for batch in batched(texts, batch_size):
            yield self.embed(batch)


# ----------------------------------------------------------------------------- output
HEADER_SIZE = 128  # a fixed-size .npy header, so the row count can be written last in place


def npy_header(rows: int, dim: int) -> bytes:
    """An .npy v1.0 header for a C-order float32 (rows, dim) array, padded to HEADER_SIZE bytes."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body = text.ljust(HEADER_SIZE - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def write_npy(path: str | Path, batches: Iterable, dim: int, on_rows=None) -> int:
    """Stream (n, dim) float32 batches into ``path`` atomically; returns the number of rows.

    ``on_rows(n)`` is called after each batch (a progress bar)."""
    from uer.utils.atomic import atomic_open

    rows = 0
    with atomic_open(path, "wb") as f:
        f.write(npy_header(0, dim))
        for batch in batches:
            f.write(batch.astype("<f4", copy=False).tobytes())
            rows += batch.shape[0]
            if on_rows is not None:
                on_rows(batch.shape[0])
        f.seek(0)
        f.write(npy_header(rows, dim))
        f.seek(0, os.SEEK_END)
    return rows


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    import types

    from uer.exit.cli import OneLineParser

    parser.error = types.MethodType(OneLineParser.error, parser)  # a bad flag is one line, not the usage block
    parser.add_argument("model_path", metavar="MODEL", help="a uer checkpoint (its vocabulary beside it, or --vocab_path)")
    parser.add_argument("--input", required=True, help="TSV with a text_a column (text_b: pairs), or one text per line; - = stdin")
    parser.add_argument("--output", required=True, help="the .npy to write (float32, one row per text)")
    parser.add_argument("--pooling", choices=tuple(POOLINGS), default="mean", help="cls: the first token; mean / max over real tokens")
    parser.add_argument("--layer", type=int, default=None, help="1..L (or -1 = last); default: the encoder's output")
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument("--seq_length", type=positive_int, default=None,
                        help="longer texts are truncated (default: 128, or the model's positions if fewer)")
    parser.add_argument("--vocab_path", default=None, help="default: the vocabulary beside MODEL, else the config's")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def command(args: argparse.Namespace) -> int:
    from uer.checkpoint import CheckpointError
    from uer.config import ConfigError
    from uer.predict import InputError, Inputs
    from uer.utils.cli import input_file, output_file

    output = output_file(args.output, "--output")
    if output.exists() and not args.force:
        raise UsageError(f"--output {args.output} already exists; it is kept: choose another path, or pass --force to replace it")
    if args.input != "-":
        source = input_file(args.input, "--input")
    model_path = input_file(args.model_path, "MODEL")
    if args.vocab_path is not None:
        input_file(args.vocab_path, "--vocab_path")
    try:
        embedder = Embedder.load(model_path, args.vocab_path, pooling=args.pooling, layer=args.layer, seq_length=args.seq_length)
        name = "<stdin>" if args.input == "-" else str(args.input)
        total = None
        if args.input != "-":  # the bar's length: the lines, less a TSV's header (a bad first line: said here)
            with source.open("rb") as f:
                total = _count_lines(source) - (Inputs(f, name, pair=None).columns is not None)
        stream = sys.stdin.buffer if args.input == "-" else source.open("rb")
        from tqdm import tqdm

        with tqdm(total=total, unit=" texts", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            try:
                rows = write_npy(output, embedder.embed_stream(read_texts(stream, name), args.batch_size), embedder.dim, bar.update)
            finally:
                if stream is not sys.stdin.buffer:
                    stream.close()
    except (EmbedError, InputError, CheckpointError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {rows} x {embedder.dim} vectors ({args.pooling} pooling, "
          f"{'last layer' if args.layer is None else f'layer {args.layer}'}) to {args.output}")
    return 0
