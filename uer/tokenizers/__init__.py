"""Tokenizers: text -> tokens -> ids, and the vocabulary they share.

    from uer.tokenizers import build_tokenizer
    tok = build_tokenizer(cfg.tokenizer, vocab_path="models/google_zh_vocab.txt")
    ids = [tok.vocab.cls_id] + tok.encode("今天天气很好") + [tok.vocab.sep_id]

Each tokenizer registers itself on :data:`TOKENIZERS` with its own config (a
:class:`TokenizerConfig` subclass); adding one is one new file plus one import line here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab
from uer.tokenizers import bert, bytelevel_bpe, char, space, sentencepiece  # noqa: F401  (each registers itself)
from uer.tokenizers.bert import BertTokenizer, BertTokenizerConfig
from uer.tokenizers.char import CharTokenizer
from uer.tokenizers.sentencepiece import SentencePieceTokenizer, train_sentencepiece
from uer.tokenizers.space import SpaceTokenizer


def build_tokenizer(
    cfg: TokenizerConfig,
    vocab_path: str | Path | None = None,
    spm_model_path: str | Path | None = None,
) -> Tokenizer:
    """The tokenizer ``cfg.name`` names. ``vocab_path`` / ``spm_model_path`` given here override the
    config's; relative paths resolve against the current directory, then the repository root.

    ``bert``, ``char`` and ``space`` read a vocabulary file; ``sentencepiece`` takes its vocabulary
    from the model, so a vocabulary file given with it is an error rather than silently ignored.
    """
    cls = TOKENIZERS.cls(cfg.name)  # an unknown name lists the valid ones
    files = {key: str(value) for key, value in (("vocab_path", vocab_path), ("spm_model_path", spm_model_path)) if value is not None}
    return cls.from_config(dataclasses.replace(cfg, **files) if files else cfg)



__all__ = [
    "BertTokenizer", "BertTokenizerConfig", "CharTokenizer", "SentencePieceTokenizer", "SpaceTokenizer", "Tokenizer",
    "TokenizerConfig", "TOKENIZERS", "Vocab", "build_tokenizer", "train_sentencepiece",
]
