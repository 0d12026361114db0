"""Whitespace tokenizer: for text that is already segmented (e.g. by jieba), one token per word."""
from __future__ import annotations

from uer.tokenizers.base import Tokenizer
from uer.tokenizers.vocab import Vocab


class SpaceTokenizer(Tokenizer):
    """``"我 爱 北京"`` -> ``["我", "爱", "北京"]``; runs of any Unicode whitespace separate tokens."""

    tokens_are_words = True

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def tokenize(self, text: str) -> list[str]:
        return text.split()
