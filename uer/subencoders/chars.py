"""The character vocabulary every subencoder reads, and the base class that looks tokens up in it.

A token's characters are its text without WordPiece's ``##`` continuation mark (``##ing`` and
``ing`` spell the same word piece). A special token (``[CLS]``, ``[unused3]``, ``<s>``) is one
symbol of its own: its letters say nothing about its meaning. Char id 0 is char padding.
"""
from __future__ import annotations

import re

import torch
from torch import nn

CHAR_PAD = 0
_SPECIAL = re.compile(r"^(\[[^\[\]]+\]|<[^<>]+>)$")  # [CLS], [unused3], <s>, <pad>
_CONTINUATION = "##"


def token_symbols(token: str) -> list[str]:
    """``"##ing"`` -> ``["i", "n", "g"]``; ``"[CLS]"`` -> ``["[CLS]"]``; ``""`` -> ``[""]``."""
    if not token or _SPECIAL.match(token):
        return [token]  # never empty: every token has at least one char to encode
    if token.startswith(_CONTINUATION) and len(token) > len(_CONTINUATION):
        token = token[len(_CONTINUATION):]
    return list(token)


def char_vocabulary(tokens: list[str], max_chars: int) -> tuple[list[str], torch.Tensor]:
    """Symbols (index i holds char id i + 1) and a (V, max_chars) long tensor of char ids per token.

    Symbols are numbered in order of first appearance, so the same token list always gives
    the same ids. Tokens longer than ``max_chars`` keep their first ``max_chars`` chars.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    index: dict[str, int] = {}
    ids = torch.full((len(tokens), max_chars), CHAR_PAD, dtype=torch.long)
    for row, token in enumerate(tokens):
        for col, symbol in enumerate(token_symbols(token)[:max_chars]):
            ids[row, col] = index.setdefault(symbol, len(index) + 1)
    return list(index), ids


class Subencoder(nn.Module):
    """Token ids (B, T) -> (B, T, emb_size) from each token's characters.

    ``char_ids`` (V, max_chars) is a persistent buffer, so a checkpoint carries the spelling of
    the vocabulary it was trained with. Subclasses implement :meth:`encode`.
    """

    def __init__(self, vocab_tokens: list[str], max_chars: int, char_emb_size: int) -> None:
        super().__init__()
        if not vocab_tokens:
            raise ValueError("a subencoder needs the vocabulary's tokens")
        self.symbols, char_ids = char_vocabulary(vocab_tokens, max_chars)
        self.register_buffer("char_ids", char_ids)
        # Row 0 (char padding) exists but is masked out by every encode(), so its value never matters.
        self.char_embedding = nn.Embedding(len(self.symbols) + 1, char_emb_size)

    def encode(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """chars (N, C) char ids, mask (N, C) True = real char (>= 1 per row) -> (N, emb_size)."""
        raise NotImplementedError

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        # Encode each distinct token once, then scatter back: a batch repeats tokens a lot.
        unique, inverse = torch.unique(src, return_inverse=True)  # (U,), (B, T)
        chars = self.char_ids[unique]  # (U, C)
        encoded = self.encode(chars, chars != CHAR_PAD)  # (U, E)
        return encoded[inverse]
