"""Text -> token ids, and for whole-word / span masking a word-start flag per id.

Word boundaries come from the tokenizer's own facts, not from its name:

- ``tokenizer.tokens_are_words`` (the space tokenizer): every token is a word, nothing to find;
- ``tokenizer.word_start_prefix`` (sentencepiece's ``"\u2581"``): the whole text is tokenized and
  a piece that carries the prefix starts a word;
- otherwise (WordPiece, char): the text is first split into words, Chinese by jieba (dictionary +
  HMM, deterministic, no model download; Chinese BERT-wwm used LTP, which needs a separately
  downloaded model), other text at whitespace; each word is tokenized on its own, so its first
  token starts it.
"""
from __future__ import annotations

import re

import numpy as np

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def needs_segmenter(tokenizer) -> bool:
    """Word starts must be found for this tokenizer (False when its tokens are words already)."""
    return not tokenizer.tokens_are_words


class TextEncoder:
    def __init__(self, tokenizer, word_boundaries: bool) -> None:
        self.tokenizer = tokenizer
        self.word_boundaries = word_boundaries
        self.vocab = tokenizer.vocab
        self.prefix = tokenizer.word_start_prefix
        if word_boundaries and self.prefix is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            self._cut = jieba.lcut

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray | None]:
        """-> ids (L,) int64 and, with word boundaries, starts (L,) bool."""
        if not self.word_boundaries:
            return np.asarray(self.tokenizer.encode(text), dtype=np.int64), None
        if self.prefix is not None:
            pieces = self.tokenizer.tokenize(text)
            ids = self.vocab.convert_tokens_to_ids(pieces)
            return np.asarray(ids, dtype=np.int64), np.asarray([p.startswith(self.prefix) for p in pieces], dtype=bool)
        ids: list[int] = []
        starts: list[bool] = []
        for word in self._cut(text) if _CJK.search(text) else text.split():
            pieces = self.tokenizer.tokenize(word)
            starts.extend(j == 0 for j in range(len(pieces)))
            ids.extend(self.vocab.convert_tokens_to_ids(pieces))
        return np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=bool)
