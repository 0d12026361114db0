"""Tokenizers: text -> tokens -> ids, and the vocabulary they share.

    from uer.tokenizers import build_tokenizer
    tok = build_tokenizer(cfg.tokenizer, vocab_path="models/google_zh_vocab.txt")
    ids = [tok.vocab.cls_id] + tok.encode("今天天气很好") + [tok.vocab.sep_id]
"""
from __future__ import annotations

from pathlib import Path

from uer.config import TokenizerConfig
from uer.tokenizers.bert import BertTokenizer
from uer.tokenizers.char import CharTokenizer
from uer.tokenizers.sentencepiece import SentencePieceTokenizer, train_sentencepiece
from uer.tokenizers.space import SpaceTokenizer
from uer.tokenizers.base import Tokenizer
from uer.tokenizers.vocab import Vocab
from uer.utils.paths import resolve_path

TOKENIZER_NAMES = ("bert", "char", "space", "sentencepiece")


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
    vocab_path = vocab_path if vocab_path is not None else cfg.vocab_path
    spm_model_path = spm_model_path if spm_model_path is not None else cfg.spm_model_path
    if cfg.name == "sentencepiece":
        if spm_model_path is None:
            raise ValueError("tokenizer 'sentencepiece' needs spm_model_path (tokenizer.spm_model_path in the config)")
        if vocab_path is not None:
            raise ValueError(
                f"tokenizer 'sentencepiece' takes its vocabulary from {spm_model_path}; "
                f"do not also give vocab_path {vocab_path}"
            )
        return SentencePieceTokenizer(resolve_path(spm_model_path))
    if cfg.name not in TOKENIZER_NAMES:
        raise ValueError(f"unknown tokenizer {cfg.name!r}; valid tokenizers: {', '.join(TOKENIZER_NAMES)}")
    if vocab_path is None:
        raise ValueError(f"tokenizer {cfg.name!r} needs vocab_path (tokenizer.vocab_path in the config)")
    if spm_model_path is not None:
        raise ValueError(f"tokenizer {cfg.name!r} does not use a sentencepiece model ({spm_model_path}); use name: sentencepiece")
    vocab = Vocab.load(resolve_path(vocab_path))
    if cfg.name == "bert":
        return BertTokenizer(
            vocab,
            do_lower_case=cfg.do_lower_case,
            strip_accents=cfg.strip_accents,
            tokenize_chinese_chars=cfg.tokenize_chinese_chars,
        )
    if cfg.name == "char":
        return CharTokenizer(vocab)
    return SpaceTokenizer(vocab)


__all__ = [
    "BertTokenizer", "CharTokenizer", "SentencePieceTokenizer", "SpaceTokenizer", "Tokenizer", "Vocab",
    "build_tokenizer", "train_sentencepiece", "TOKENIZER_NAMES",
]
