"""What every tokenizer is (:class:`Tokenizer`) and what every tokenizer config has (:class:`TokenizerConfig`)."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Iterable

from uer.tokenizers.vocab import Vocab
from uer.utils.paths import resolve_path


@dataclass(frozen=True)
class TokenizerConfig:
    """The ``tokenizer`` section: the tokenizer's registered ``name`` and the files it may read.

    Each tokenizer registers a subclass with its own options (``BertTokenizerConfig`` adds
    lower-casing ...). A plain ``TokenizerConfig(name=...)`` means that tokenizer with its
    default options. Relative paths resolve against the current directory, then the repository root.
    """

    name: str = "bert"
    vocab_path: str | None = None  # tokenizers that read a vocabulary file (bert, char, space)
    spm_model_path: str | None = None  # sentencepiece: the vocabulary is the model's pieces


class Tokenizer(abc.ABC):
    """Text -> tokens of :attr:`vocab` -> ids. ``encode`` adds no special tokens: callers add [CLS]/[SEP].

    Facts that other code asks the tokenizer, instead of branching on its name:

    - ``tokens_are_words``: every token is a whole word (space), so whole-word and span masking
      need no segmenter;
    - ``word_start_prefix``: the mark a piece that starts a word carries (sentencepiece's
      ``"\\u2581"``), or None when word starts must be found another way (a segmenter, or
      WordPiece's ``##`` continuations);
    - ``reads_vocab_file``: the vocabulary is a ``vocab_path`` file (False: it comes from the
      model file, ``spm_model_path``).
    """

    vocab: Vocab
    # word boundaries (whole-word / span masking in uer.data.words):
    tokens_are_words: bool = False  # every token is a whole word (space): no segmenter is needed
    word_start_prefix: str | None = None  # pieces starting a word carry it (sentencepiece "\u2581")
    reads_vocab_file: bool = True

    @classmethod
    def from_config(cls, cfg: TokenizerConfig) -> "Tokenizer":
        """The tokenizer ``cfg`` describes, its files checked (see :func:`uer.tokenizers.build_tokenizer`)."""
        if cfg.spm_model_path is not None:
            raise ValueError(f"tokenizer {cfg.name!r} does not use a sentencepiece model ({cfg.spm_model_path}); use name: sentencepiece")
        if cfg.vocab_path is None:
            raise ValueError(f"tokenizer {cfg.name!r} needs vocab_path (tokenizer.vocab_path in the config)")
        return cls.from_vocab(Vocab.load(resolve_path(cfg.vocab_path)), cfg)

    @classmethod
    def from_vocab(cls, vocab: Vocab, cfg: TokenizerConfig) -> "Tokenizer":
        return cls(vocab)  # tokenizers with options override this

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (strings; unknown pieces may be outside the vocabulary)."""

    def encode(self, text: str) -> list[int]:
        return self.vocab.convert_tokens_to_ids(self.tokenize(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Readable text for ids (tokens joined by spaces; subclasses undo their own splitting)."""
        return " ".join(self.vocab.convert_ids_to_tokens(ids))
