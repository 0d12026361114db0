"""BERT's tokenizer: a basic tokenizer (clean, split CJK characters and punctuation, optionally
lower-case and strip accents) followed by greedy longest-match-first WordPiece.

Speed: the basic tokenizer is one ``str.translate`` through a per-character table that is filled
lazily (a character's fate is computed once per process, then it is a dict lookup in C), followed
by ``str.split``. WordPiece results are cached per word, so a word is split once however often it
occurs. Character classes follow Google's BERT; the table applies lower-casing and accent
stripping per character, as HuggingFace ``tokenizers`` does (so no final-sigma rule).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable

from uer.tokenizers.base import Tokenizer, TokenizerConfig
from uer.tokenizers.registry import TOKENIZERS
from uer.tokenizers.vocab import Vocab

# Google BERT's "CJK Unified Ideographs" blocks: each character becomes a word of its own.
# (HuggingFace tokenizers starts the sixth block at 0x2B920; we keep BERT's 0x2B820.)
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

_CACHE_LIMIT = 1 << 20  # words; the cache is emptied when full (Zipf: the frequent words come right back)


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_whitespace(ch: str) -> bool:
    """Space, tab, newline, carriage return or any Unicode space separator (Zs)."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Characters that are removed: controls (Cc, except tab/newline/CR, which are whitespace), format
    characters (Cf), private use (Co) and lone surrogates (Cs). Unassigned code points (Cn) stay and
    become ``[UNK]``, as in HuggingFace tokenizers (Google's BERT removes only Cc and Cf)."""
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(ch: str) -> bool:
    """Unicode punctuation (P*), plus every ASCII non-alphanumeric symbol such as ``$`` or ``^``."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def strip_accents(text: str) -> str:
    """``"Héllo"`` -> ``"Hello"``: canonical decomposition, then non-spacing marks (Mn) dropped."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def normalize_char(ch: str, lower: bool, strip: bool, chinese: bool) -> str | None:
    """What the basic tokenizer turns one character into: ``None`` (removed), ``" "`` (a word break),
    or text in which CJK characters and punctuation are surrounded by spaces."""
    if is_whitespace(ch):
        return " "
    if ch == "\ufffd" or is_control(ch):  # U+FFFD: a byte that failed to decode, carries nothing
        return None
    if chinese and is_cjk(ord(ch)):
        return f" {ch} "
    out = ch.lower() if lower else ch
    if strip:
        out = strip_accents(out)
    # Punctuation is checked after lower-casing and accent stripping, as BERT does: U+1FEF
    # (Greek varia, a symbol) decomposes to "`", which is punctuation.
    return "".join(f" {c} " if is_punctuation(c) else c for c in out)


class _CharMap(dict):
    """A ``str.translate`` table that computes an entry the first time a character is looked up."""

    def __init__(self, lower: bool, strip: bool, chinese: bool) -> None:
        super().__init__()
        self.options = (lower, strip, chinese)

    def __missing__(self, cp: int) -> str | int | None:
        ch = chr(cp)
        out = normalize_char(ch, *self.options)
        value = cp if out == ch else out  # an int maps a character to itself
        self[cp] = value
        return value


_CHAR_MAPS: dict[tuple[bool, bool, bool], _CharMap] = {}


def _char_map(lower: bool, strip: bool, chinese: bool) -> _CharMap:
    key = (lower, strip, chinese)
    if key not in _CHAR_MAPS:
        _CHAR_MAPS[key] = _CharMap(*key)
    return _CHAR_MAPS[key]


@dataclass(frozen=True)
class BertTokenizerConfig(TokenizerConfig):
    name: str = "bert"
    do_lower_case: bool = True
    strip_accents: bool | None = None  # None: follow do_lower_case, as BERT does
    tokenize_chinese_chars: bool = True


@TOKENIZERS.register("bert", config=BertTokenizerConfig)
class BertTokenizer(Tokenizer):
    """BERT tokenization on ``vocab``.

    Example::

        tok = BertTokenizer(Vocab.load("models/google_uncased_en_vocab.txt"))
        tok.tokenize("Unaffable, isn't it?")   # ['una', '##ffa', '##ble', ',', 'isn', "'", 't', 'it', '?']

    ``strip_accents=None`` follows ``do_lower_case``, as BERT does. A word longer than
    ``max_input_chars_per_word`` characters, or one WordPiece cannot cover, becomes ``[UNK]``.
    """

    def __init__(
        self,
        vocab: Vocab,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
    ) -> None:
        self.vocab = vocab
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self._setup()

    def _setup(self) -> None:
        self._unk = self.vocab.unk_token  # fails now, naming the file, if the vocabulary has no [UNK]
        self._char_map = _char_map(self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars)
        # No vocabulary entry is longer than this, so WordPiece need not try longer pieces.
        self._max_piece_len = max((len(t) for t in self.vocab.tokens), default=0)
        self._cache: dict[str, tuple[str, ...]] = {}  # word -> its WordPiece tokens
        self._id_cache: dict[str, tuple[int, ...]] = {}  # word -> their ids

    @classmethod
    def from_vocab(cls, vocab: Vocab, cfg: TokenizerConfig) -> "BertTokenizer":
        if not isinstance(cfg, BertTokenizerConfig):  # a plain TokenizerConfig: BERT's defaults
            cfg = BertTokenizerConfig(vocab_path=cfg.vocab_path)
        return cls(vocab, do_lower_case=cfg.do_lower_case, strip_accents=cfg.strip_accents,
                   tokenize_chinese_chars=cfg.tokenize_chinese_chars)

    def __getstate__(self) -> dict:  # for multiprocessing: the cache and the shared table stay behind
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def basic_tokenize(self, text: str) -> list[str]:
        """Words before WordPiece: ``"Hello, 世界"`` -> ``["hello", ",", "世", "界"]``."""
        return text.translate(self._char_map).split()

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first: ``"unaffable"`` -> ``["una", "##ffa", "##ble"]``; all or ``[UNK]``."""
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [self._unk]
        index = self.vocab.index
        if word in index:
            return [word]
        pieces = []
        start = 0
        while start < n:
            end = min(n, start + self._max_piece_len)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in index:
                    break
                end -= 1
            else:  # no prefix of the rest is in the vocabulary
                return [self._unk]
            pieces.append(piece)
            start = end
        return pieces

    @staticmethod
    def _cached(cache: dict, word: str, compute) -> tuple:
        """``cache[word]``, computed once; the cache is emptied when full."""
        value = cache.get(word)
        if value is None:
            value = compute(word)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[word] = value
        return value

    def _word_tokens(self, word: str) -> tuple[str, ...]:
        return self._cached(self._cache, word, lambda w: tuple(self.wordpiece(w)))

    def _word_ids(self, word: str) -> tuple[int, ...]:
        return self._cached(self._id_cache, word, lambda w: tuple(self.vocab.convert_tokens_to_ids(self._word_tokens(w))))

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in self.basic_tokenize(text) for piece in self._word_tokens(word)]

    def encode(self, text: str) -> list[int]:
        """Same as ``convert_tokens_to_ids(tokenize(text))``, with the ids cached per word too."""
        return [i for word in self.basic_tokenize(text) for i in self._word_ids(word)]

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens joined by spaces, ``##`` continuations glued back: ``una ##ffa ##ble`` -> ``unaffable``."""
        return " ".join(self.vocab.convert_ids_to_tokens(ids)).replace(" ##", "")
