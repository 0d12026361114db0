"""Byte-level BPE (GPT-2, RoBERTa) through HuggingFace's ``tokenizers``: the file is a ``tokenizer.json``.

    tok = build_tokenizer(BytelevelBpeTokenizerConfig(vocab_path="out/tokenizer.json"))
    ids = [tok.vocab.cls_id] + tok.encode("Hello world") + [tok.vocab.sep_id]   # <s> ... </s>

``vocab_path`` names the ``tokenizer.json`` (the vocabulary is its token list, id for id), so every
command that passes a vocabulary file passes this one. Any model a ``tokenizer.json`` holds works
(XLM-R's unigram too); the name says what it is used for. Special-token roles are found by the
strings the model family uses: RoBERTa's ``<s> </s> <pad> <unk> <mask>``, else GPT-2's
``<|endoftext|>`` for every role it can play.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab
from uer.utils.paths import resolve_path

ROLES = {  # role -> the strings that may play it, first found wins
    "pad": ("<pad>", "<|endoftext|>"),
    "unk": ("<unk>", "<|endoftext|>"),
    "cls": ("<s>", "<|endoftext|>"),
    "sep": ("</s>", "<|endoftext|>"),
    "mask": ("<mask>",),
}


@dataclass(frozen=True)
class BytelevelBpeTokenizerConfig(TokenizerConfig):
    name: str = "bytelevel_bpe"


def special_tokens(tokens: set[str]) -> dict[str, str]:
    """Which token plays each role; a role no token plays keeps its first name (an error when used)."""
    return {role: next((c for c in names if c in tokens), names[0]) for role, names in ROLES.items()}


@TOKENIZERS.register("bytelevel_bpe", config=BytelevelBpeTokenizerConfig)
class BytelevelBpeTokenizer(Tokenizer):
    """A ``tokenizer.json`` (HuggingFace ``tokenizers``): GPT-2 / RoBERTa byte-level BPE."""

    word_start_prefix = "\u0120"  # "Ġ": the byte-level form of the space that starts a word

    @classmethod
    def from_config(cls, cfg: TokenizerConfig) -> "BytelevelBpeTokenizer":
        if cfg.spm_model_path is not None:
            raise ValueError(f"tokenizer 'bytelevel_bpe' reads a tokenizer.json (vocab_path), not {cfg.spm_model_path}")
        if cfg.vocab_path is None:
            raise ValueError("tokenizer 'bytelevel_bpe' needs vocab_path: the tokenizer.json (tokenizer.vocab_path in the config)")
        return cls(resolve_path(cfg.vocab_path))

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._load()

    def _load(self) -> None:
        from tokenizers import Tokenizer as HfTokenizer

        if not self.path.is_file():
            raise FileNotFoundError(f"tokenizer file {self.path} does not exist")
        try:
            self.hf = HfTokenizer.from_file(str(self.path))
        except Exception as exc:  # tokenizers raises its own Exception type for a malformed file
            raise ValueError(f"{self.path} is not a tokenizer.json ({str(exc).splitlines()[0][:200]})") from None
        size = self.hf.get_vocab_size(with_added_tokens=True)
        tokens = [self.hf.id_to_token(i) for i in range(size)]
        holes = [i for i, t in enumerate(tokens) if t is None]
        if holes:
            raise ValueError(f"{self.path}: ids {holes[:5]} have no token; the vocabulary must be 0..{size - 1} without gaps")
        self.vocab = Vocab(tokens, source=str(self.path), special_tokens=special_tokens(set(tokens)))
        # GPT-2 / RoBERTa mark a word's start with "Ġ"; a sentencepiece-style model in a tokenizer.json
        # (XLM-R) with "▁": whichever more tokens carry (whole-word masking reads it)
        marks = {m: sum(t.startswith(m) for t in tokens) for m in ("\u0120", "\u2581")}
        self.word_start_prefix = max(marks, key=marks.get)

    def __getstate__(self) -> dict:  # the Rust tokenizer pickles, but reloading from the file is smaller
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._load()

    def tokenize(self, text: str) -> list[str]:
        return self.hf.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)


def load_hf_tokenizer(folder: Path, rows: int) -> bytes:
    """An HF folder's byte-level BPE as ``tokenizer.json`` bytes: the file itself, or one built from
    ``vocab.json`` + ``merges.txt`` (GPT-2's original files). Its vocabulary must match the
    embedding's ``rows``."""
    from tokenizers import Tokenizer as HfTokenizer

    if (folder / "tokenizer.json").is_file():
        data = (folder / "tokenizer.json").read_bytes()
        hf = HfTokenizer.from_str(data.decode("utf-8"))
    else:
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        specials = [t for names in ROLES.values() for t in names if t in vocab]
        bpe.add_special_tokens(list(dict.fromkeys(specials)))  # never split, as GPT-2's and RoBERTa's are not
        data = bpe.to_str().encode("utf-8")
        hf = HfTokenizer.from_str(data.decode("utf-8"))
    size = hf.get_vocab_size(with_added_tokens=True)
    if size != rows:
        raise ValueError(f"{folder}: the tokenizer has {size} tokens but the word embedding has {rows} rows")
    return data
