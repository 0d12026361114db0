"""Character tokenizer: every non-whitespace character is a token (Chinese character models)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab


@dataclass(frozen=True)
class CharTokenizerConfig(TokenizerConfig):
    name: str = "char"


@TOKENIZERS.register("char", config=CharTokenizerConfig)
class CharTokenizer(Tokenizer):
    """``"我 爱 you"`` -> ``["我", "爱", "y", "o", "u"]``; no lower-casing, no normalisation."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def tokenize(self, text: str) -> list[str]:
        return list("".join(text.split()))  # C speed: drop whitespace, then one token per character

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab.convert_ids_to_tokens(ids))
