"""SentencePiece: train a model on a corpus, and tokenize with one (ALBERT/XLNet-style vocabularies)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab
from uer.utils.paths import resolve_path


@dataclass(frozen=True)
class SentencePieceTokenizerConfig(TokenizerConfig):
    name: str = "sentencepiece"


def _special_tokens(sp: Any, pieces: set[str]) -> dict[str, str]:
    """Which piece plays each role: the model's own pad/unk pieces, BERT's names where the model has
    them as user-defined symbols (``train_sentencepiece`` adds them), else the bos/eos pieces."""

    def first(*candidates: str | None) -> str:
        present = [c for c in candidates if c is not None and c in pieces]
        return present[0] if present else next(c for c in candidates if c is not None)

    def piece(i: int) -> str | None:
        return sp.id_to_piece(i) if i >= 0 else None

    return {
        "pad": first(piece(sp.pad_id()), "[PAD]", "<pad>"),
        "unk": sp.id_to_piece(sp.unk_id()),
        "cls": first("[CLS]", piece(sp.bos_id())),
        "sep": first("[SEP]", piece(sp.eos_id())),
        "mask": first("[MASK]", "<mask>"),
    }


@TOKENIZERS.register("sentencepiece", config=SentencePieceTokenizerConfig)
class SentencePieceTokenizer(Tokenizer):
    """Tokenize with a trained ``.model``; the vocabulary is the model's pieces, id for id.

    Example::

        tok = SentencePieceTokenizer("models/spm/zh.model")
        tok.encode("[CLS] 你好")      # [CLS] is one piece when it was a user-defined symbol
    """

    word_start_prefix = "\u2581"
    reads_vocab_file = False

    @classmethod
    def from_config(cls, cfg: TokenizerConfig) -> "SentencePieceTokenizer":
        if cfg.spm_model_path is None:
            raise ValueError("tokenizer 'sentencepiece' needs spm_model_path (tokenizer.spm_model_path in the config)")
        if cfg.vocab_path is not None:
            raise ValueError(
                f"tokenizer 'sentencepiece' takes its vocabulary from {cfg.spm_model_path}; "
                f"do not also give vocab_path {cfg.vocab_path}"
            )
        return cls(resolve_path(cfg.spm_model_path))

    def __init__(self, spm_model_path: str | Path) -> None:
        self.spm_model_path = Path(spm_model_path)
        self._load()

    def _load(self) -> None:
        import sentencepiece

        path = self.spm_model_path
        if not path.is_file():
            raise FileNotFoundError(f"sentencepiece model {path} does not exist")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        tokens = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.vocab = Vocab(tokens, source=str(path), special_tokens=_special_tokens(self.sp, set(tokens)))

    def __getstate__(self) -> dict:  # the C++ processor does not pickle; reload it from the file
        return {"spm_model_path": self.spm_model_path}

    def __setstate__(self, state: dict) -> None:
        self.spm_model_path = state["spm_model_path"]
        self._load()

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)  # the vocabulary is the model's piece list, so ids agree

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(list(ids))


def train_sentencepiece(
    corpus_path: str | Path,
    model_prefix: str | Path,
    vocab_size: int,
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram",
    character_coverage: float = 0.9995,
    user_defined_symbols: Sequence[str] = ("[CLS]", "[SEP]", "[MASK]"),
    input_sentence_size: int = 1_000_000,
    num_threads: int = 1,
    **options: Any,
) -> Path:
    """Train ``{model_prefix}.model`` (and ``.vocab``) on ``corpus_path`` (one sentence per line).

    Ids are laid out like BERT's: ``<pad>`` 0, ``<unk>`` 1, then ``user_defined_symbols`` (so
    ``[CLS]``, ``[SEP]``, ``[MASK]`` are single pieces, never split); no bos/eos pieces.
    ``character_coverage`` 0.9995 suits Chinese/Japanese, 1.0 small alphabets. Other sentencepiece
    trainer options pass through ``options`` (e.g. ``hard_vocab_limit=False`` for a tiny corpus).
    The files appear only once training has succeeded.
    """
    import sentencepiece

    corpus_path = Path(corpus_path)
    if not corpus_path.is_file():
        raise FileNotFoundError(f"sentencepiece training corpus {corpus_path} does not exist")
    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spm.", dir=model_prefix.parent) as tmp:
        tmp_prefix = Path(tmp) / model_prefix.name
        with open(os.devnull, "w") as quiet:  # the trainer logs every step to stderr
            sentencepiece.SentencePieceTrainer.train(
                input=str(corpus_path),
                model_prefix=str(tmp_prefix),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                user_defined_symbols=list(user_defined_symbols),
                pad_id=0,
                unk_id=1,
                bos_id=-1,
                eos_id=-1,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                num_threads=num_threads,
                logstream=quiet,
                **options,
            )
        for suffix in (".vocab", ".model"):  # the .model last: its presence means a complete pair
            os.replace(f"{tmp_prefix}{suffix}", f"{model_prefix}{suffix}")
    return Path(f"{model_prefix}.model")
