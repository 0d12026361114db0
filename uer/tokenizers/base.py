from __future__ import annotations

import abc
from typing import Iterable

from uer.tokenizers.vocab import Vocab


class Tokenizer(abc.ABC):
    """Text -> tokens of :attr:`vocab` -> ids. ``encode`` adds no special tokens: callers add [CLS]/[SEP]."""

    vocab: Vocab
    # word boundaries (whole-word / span masking in uer.data.words):
    tokens_are_words: bool = False  # every token is a whole word (space): no segmenter is needed
    word_start_prefix: str | None = None  # pieces starting a word carry it (sentencepiece "\u2581")

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (strings; unknown pieces may be outside the vocabulary)."""

    def encode(self, text: str) -> list[int]:
        return self.vocab.convert_tokens_to_ids(self.tokenize(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Readable text for ids (tokens joined by spaces; subclasses undo their own splitting)."""
        return " ".join(self.vocab.convert_ids_to_tokens(ids))
