"""``python -m uer vocab build`` (a vocabulary from a corpus) and ``python -m uer vocab extend``
(new whole-word tokens added to a trained model).

    python -m uer vocab build --corpus a.txt b.txt --size 8000 --kind wordpiece --output models/my_vocab.txt
    python -m uer vocab build --corpus a.txt --size 8000 --kind sentencepiece --output models/my_spm.model
    python -m uer vocab extend out/model.pt --words new_words.txt --output out/extended.pt

``build`` trains WordPiece with HuggingFace ``tokenizers`` (written as our one-token-per-line
``vocab.txt``, BERT's special tokens first) or a sentencepiece model (``uer.tokenizers.train_sentencepiece``).

``extend`` appends one row per new word to the word embedding (and to an output layer that has
one row per token: an MLM / LM decoder and its bias), each initialised with the mean of the rows
of the pieces the current tokenizer splits the word into, so the model starts out reading the new
token as it read its pieces. The checkpoint and its vocabulary are written as a new pair
(``NEW.pt`` + ``NEW.vocab.txt``); the input is never changed.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from uer.utils.cli import UsageError, positive_int

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabToolError(ValueError):
    """Input a vocabulary tool cannot use; the message names file:line."""


# ----------------------------------------------------------------------------- build
def build_wordpiece(corpora: Sequence[str | Path], size: int, output: str | Path, lowercase: bool = False,
                    min_frequency: int = 2) -> int:
    """Train WordPiece on ``corpora`` (one text per line) -> ``output`` (one token per line); returns its size."""
    from tokenizers import BertWordPieceTokenizer

    from uer.tokenizers.vocab import Vocab

    trainer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=lowercase or None, lowercase=lowercase)
    trainer.train([str(p) for p in corpora], vocab_size=size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                  show_progress=False, wordpieces_prefix="##")
    ranked = sorted(trainer.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in ranked]
    if tokens[: len(SPECIALS)] != list(SPECIALS):
        raise VocabToolError(f"the trainer did not put {', '.join(SPECIALS)} first")
    Vocab(tokens, source="<wordpiece>").save(output)
    return len(tokens)


def build_sentencepiece(corpora: Sequence[str | Path], size: int, output: str | Path, model_type: str = "unigram") -> int:
    """Train a sentencepiece model -> ``output`` (``.model``; ``.vocab`` beside it); returns its size."""
    from uer.tokenizers.sentencepiece import train_sentencepiece

    output = Path(output)
    prefix = output.with_suffix("") if output.suffix == ".model" else output
    with tempfile.TemporaryDirectory(prefix=".corpus.", dir=prefix.parent) as tmp:
        corpus = Path(corpora[0])
        if len(corpora) > 1:  # one file for the trainer, streamed (never held in memory)
            corpus = Path(tmp) / "corpus.txt"
            with corpus.open("wb") as out:
                for path in corpora:
                    with open(path, "rb") as f:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                        if chunk[-1:] not in (b"", b"\n"):
                            out.write(b"\n")
        try:
            model = train_sentencepiece(corpus, prefix, size)
        except RuntimeError as exc:  # sentencepiece's C++ trainer: e.g. a vocabulary larger than the corpus allows
            raise VocabToolError(f"sentencepiece could not train a {size}-piece model: {str(exc).splitlines()[-1]}") from None
    if model != output:
        os.replace(model, output)
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(output)).get_piece_size()


# ----------------------------------------------------------------------------- extend
@dataclass
class Extension:
    added: list[str] = field(default_factory=list)
    pieces: dict[str, list[str]] = field(default_factory=dict)  # word -> the pieces its row was averaged from
    rows: list[str] = field(default_factory=list)  # the tensors that grew
    unknown_only: list[str] = field(default_factory=list)  # words whose only pieces were [UNK]


def read_words(path: str | Path, vocab) -> list[str]:
    """One new word per line. Blank lines, spaces inside a word, a word listed twice and a word
    already in the vocabulary are errors naming ``file:line``."""
    words: list[str] = []
    first: dict[str, int] = {}
    lines = Path(path).read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final line break ends the last word
    for number, line in enumerate(lines, start=1):
        try:
            word = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise VocabToolError(f"{path}:{number}: not UTF-8 text") from None
        if not word.strip():
            raise VocabToolError(f"{path}:{number}: empty line; one word per line")
        if word != word.strip() or any(c.isspace() for c in word):
            raise VocabToolError(f"{path}:{number}: {word!r} holds whitespace; a token is one word")
        if word in vocab:
            raise VocabToolError(f"{path}:{number}: {word!r} is already in the vocabulary (id {vocab.index[word]})")
        if word in first:
            raise VocabToolError(f"{path}:{number}: {word!r} is listed twice (first at line {first[word]})")
        first[word] = number
        words.append(word)
    if not words:
        raise VocabToolError(f"{path}: no words")
    return words


def vocab_sized(state: dict, words_key: str, rows: int) -> list[str]:
    """The tensors with one row per token: the word embedding and any output layer over the vocabulary."""
    keys = [words_key]
    for key, tensor in state.items():
        if key.startswith("target.") and key.endswith(("decoder.weight", "decoder.bias")) and tensor.shape[0] == rows:
            keys.append(key)
    return keys


def extend_model(model_path: str | Path, words_path: str | Path, output: str | Path, vocab_path: str | Path | None = None,
                 force: bool = False) -> Extension:
    """Add ``words_path``'s words to the model at ``model_path``; write ``output`` and ``<output stem>.vocab.txt``."""
    import torch

    from uer.checkpoint import checkpoint_config, load_state, read_checkpoint, save_checkpoint
    from uer.config import config_from_dict, to_dict
    from uer.model_builder import build_model
    from uer.tokenizers import build_tokenizer
    from uer.tokenizers.vocab import Vocab

    state = read_checkpoint(model_path)
    config = checkpoint_config(state, model_path)
    tok_cfg = config.tokenizer
    if tok_cfg.name not in ("bert", "char", "space"):
        raise VocabToolError(f"tokenizer {tok_cfg.name!r} takes its vocabulary from its model file; only a "
                             "vocab.txt vocabulary (bert, char, space) can be extended: train a new one instead")
    if config.subencoder is not None:
        raise VocabToolError("a model with a subencoder derives its character vocabulary from the tokens: not extended")
    extra = state["extra"]
    if vocab_path is None:
        beside = Path(model_path).parent / (extra.get("vocab_file") or "vocab.txt")
        vocab_path = beside if beside.is_file() else tok_cfg.vocab_path
    if vocab_path is None:
        raise VocabToolError(f"{model_path}: no vocabulary beside it and none in its config: pass --vocab_path")
    try:
        tokenizer = build_tokenizer(tok_cfg, vocab_path=vocab_path)
    except (ValueError, FileNotFoundError) as exc:
        raise VocabToolError(str(exc)) from None
    old = tokenizer.vocab
    weights = state["model"]
    words_key = "embedding.components.word.embedding.weight"
    rows = weights[words_key].shape[0]
    if len(old) != rows:
        raise VocabToolError(f"vocabulary {old.source} has {len(old)} tokens, the model's word embedding {rows} rows: not a pair")
    words = read_words(words_path, old)

    new_vocab = Vocab(old.tokens + words, source=str(output), special_tokens=old.special_tokens)
    new_tokenizer = type(tokenizer).from_vocab(new_vocab, tok_cfg)
    for word in words:  # a row the tokenizer never reaches would be dead weight: refuse it
        got = new_tokenizer.tokenize(word)
        if got != [word]:
            line = words.index(word) + 1
            raise VocabToolError(f"{words_path}:{line}: {word!r} would still be read as {got} by the {tok_cfg.name} "
                                 "tokenizer (case, accents or punctuation), so its row would never be used")

    result = Extension(added=words)
    grown = dict(weights)
    ids = {w: old.convert_tokens_to_ids(tokenizer.tokenize(w)) for w in words}
    result.pieces = {w: tokenizer.tokenize(w) for w in words}
    result.unknown_only = [w for w, i in ids.items() if set(i) <= {old.unk_id}]
    for key in vocab_sized(weights, words_key, rows):
        tensor = weights[key]
        new_rows = torch.stack([tensor[ids[w]].float().mean(0).to(tensor.dtype) for w in words])
        grown[key] = torch.cat([tensor, new_rows], 0)
        result.rows.append(key)
    # Tied tensors are one Parameter in the model: rebuild, load, and let the builder tie them again.
    tokenizer_section = {**to_dict(config)["tokenizer"], "vocab_path": str(Path(output).with_suffix(".vocab.txt").resolve())}
    new_config = config_from_dict({**to_dict(config), "tokenizer": tokenizer_section}, config.source)
    labels = next((extra[k] for k in ("labels", "id2label") if isinstance(extra.get(k), list)), None)
    labels_num = extra.get("labels_num") or (len(labels) if labels is not None else None)  # run_fastbert.py / run_ner.py
    model = build_model(new_config, vocab_size=len(new_vocab), labels_num=labels_num)
    load_state(model, grown, str(model_path), new_config.source)
    vocab_out = Path(output).with_suffix(".vocab.txt")
    for path in (Path(output), vocab_out):
        if path.exists() and not force:
            raise UsageError(f"{path} already exists; it is kept and nothing was written: choose another --output, or pass --force")
    new_extra = {k: v for k, v in extra.items() if k not in ("trainer", "huggingface")}  # optimizer moments have the old size
    new_extra["vocab_size"] = len(new_vocab)
    if "vocab_file" in extra:
        new_extra["vocab_file"] = vocab_out.name
    new_vocab.save(vocab_out)
    save_checkpoint(output, model, new_config, **new_extra)
    return result


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    import types

    from uer.exit.cli import OneLineParser

    parser.error = types.MethodType(OneLineParser.error, parser)  # a bad flag is one line, not the usage block
    sub = parser.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    b = sub.add_parser("build", help="train a WordPiece vocabulary or a sentencepiece model on a corpus")
    b.add_argument("--corpus", nargs="+", required=True, help="text files, one text per line")
    b.add_argument("--size", type=positive_int, required=True, help="the vocabulary size (special tokens included)")
    b.add_argument("--kind", choices=("wordpiece", "sentencepiece"), required=True)
    b.add_argument("--output", required=True, help="wordpiece: the vocab.txt; sentencepiece: the .model (+ .vocab beside)")
    b.add_argument("--lowercase", action="store_true", help="wordpiece: lower-case and strip accents first (BERT uncased)")
    b.add_argument("--min_frequency", type=positive_int, default=2, help="wordpiece: keep merges seen this often")
    b.add_argument("--force", action="store_true", help="replace an existing --output")
    e = sub.add_parser("extend", help="add whole words to a model's vocabulary (new rows from their pieces' mean)")
    e.add_argument("model_path", metavar="MODEL", help="a uer checkpoint with a vocab.txt vocabulary")
    e.add_argument("--words", required=True, help="new words, one per line")
    e.add_argument("--output", required=True, help="the new checkpoint; its vocabulary goes beside it as NEW.vocab.txt")
    e.add_argument("--vocab_path", default=None, help="the model's vocabulary; default: beside MODEL, else its config's")
    e.add_argument("--force", action="store_true", help="replace an existing --output and its .vocab.txt")


def command(args: argparse.Namespace) -> int:
    from uer.checkpoint import CheckpointError
    from uer.config import ConfigError
    from uer.utils.cli import input_file, output_file

    output = output_file(args.output, "--output")
    try:
        if args.action == "build":
            corpora = [input_file(c, "--corpus") for c in args.corpus]
            empty = next((c for c in corpora if c.stat().st_size == 0), None)
            if empty is not None:
                raise UsageError(f"--corpus {empty} is empty")
            if output.exists() and not args.force:
                raise UsageError(f"--output {args.output} already exists; it is kept: choose another path, or pass --force")
            if args.kind == "wordpiece":
                if args.size <= len(SPECIALS):
                    raise UsageError(f"--size {args.size}: the {len(SPECIALS)} special tokens alone take that many")
                size = build_wordpiece(corpora, args.size, output, args.lowercase, args.min_frequency)
            else:
                if output.suffix != ".model":
                    raise UsageError(f"--output {args.output}: a sentencepiece model's name ends in .model")
                size = build_sentencepiece(corpora, args.size, output)
            why = ""
            if size < args.size:
                why = f" (the corpus supports no more than that; asked for {args.size})"
            elif size > args.size:  # WordPiece keeps every character, so that no text of the corpus becomes [UNK]
                why = f" (more than --size {args.size}: every character of the corpus is kept as a token)"
            print(f"wrote {args.output}: {size} tokens{why}")
            return 0
        input_file(args.model_path, "MODEL")
        words = input_file(args.words, "--words")
        if args.vocab_path is not None:
            input_file(args.vocab_path, "--vocab_path")
        if Path(args.output).resolve() == Path(args.model_path).resolve():
            raise UsageError(f"--output {args.output} is MODEL itself; the input is never replaced: choose another path")
        result = extend_model(args.model_path, words, output, args.vocab_path, args.force)
    except (VocabToolError, CheckpointError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    print(f"added {len(result.added)} tokens; rows grown: {', '.join(result.rows)}")
    if result.unknown_only:
        print(f"note: {len(result.unknown_only)} words had only [UNK] pieces (their rows start as [UNK]'s): "
              f"{', '.join(result.unknown_only[:10])}")
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.vocab.txt')}")
    return 0
