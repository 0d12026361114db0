"""Whitespace tokenizer: for text that is already segmented (e.g. by jieba), one token per word."""
from __future__ import annotations

from dataclasses import dataclass

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab


@dataclass(frozen=True)
class SpaceTokenizerConfig(TokenizerConfig):
    name: str = "space"


@TOKENIZERS.register("space", config=SpaceTokenizerConfig)
class SpaceTokenizer(Tokenizer):
    """``"我 爱 北京"`` -> ``["我", "爱", "北京"]``; runs of any Unicode whitespace separate tokens."""

    tokens_are_words = True

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def tokenize(self, text: str) -> list[str]:
        return text.split()
