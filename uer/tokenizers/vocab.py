"""The vocabulary every tokenizer shares: an ordered list of unique tokens, token <-> id.

Special tokens are found by their strings (``"[PAD]"``, ``"[UNK]"`` ... or a sentencepiece
model's ``"<pad>"``, ``"<unk>"``), never by a fixed id: a vocabulary that lacks one fails with
a message naming the token and the file, at the moment the token is needed.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from uer.utils.atomic import atomic_open

BERT_SPECIALS: dict[str, str] = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
}


class Vocab:
    """An ordered list of unique tokens; a token's id is its position.

    ``special_tokens`` maps a role (``pad``, ``unk``, ``cls``, ``sep``, ``mask``) to the token string
    that plays it in this vocabulary; BERT's names by default.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        source: str = "<memory>",
        special_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.tokens: list[str] = list(tokens)
        self.source = source
        self.special_tokens: dict[str, str] = dict(BERT_SPECIALS if special_tokens is None else special_tokens)
        unknown_roles = set(self.special_tokens) - set(BERT_SPECIALS)
        if unknown_roles:
            raise ValueError(f"unknown special-token role(s) {sorted(unknown_roles)}; valid roles: {', '.join(BERT_SPECIALS)}")
        self.index: dict[str, int] = {}  # token -> id; read it, do not change it
        for i, token in enumerate(self.tokens):
            if token in self.index:
                raise ValueError(f"{source}: token {token!r} appears twice (ids {self.index[token]} and {i})")
            self.index[token] = i

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | Path, special_tokens: Mapping[str, str] | None = None) -> "Vocab":
        """One token per line, as BERT's ``vocab.txt``; line ``n`` (from 1) is id ``n - 1``.

        Only the line break is removed, so tokens such as ``"\\u2028"`` survive. An empty line or a
        token seen before is an error naming ``file:line``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {path} does not exist")
        text = path.read_text(encoding="utf-8-sig")  # text mode: \r\n becomes \n; \u2028 is not a line end
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final line break ends the last token, it does not start an empty one
        if not lines:
            raise ValueError(f"vocabulary file {path} is empty")
        tokens: list[str] = []
        first_line: dict[str, int] = {}
        for lineno, token in enumerate(lines, start=1):
            if token == "":
                raise ValueError(f"{path}:{lineno}: empty line; a vocabulary file holds one token per line")
            if token in first_line:
                raise ValueError(f"{path}:{lineno}: token {token!r} appears twice (first at line {first_line[token]})")
            first_line[token] = lineno
            tokens.append(token)
        return cls(tokens, source=str(path), special_tokens=special_tokens)

    def save(self, path: str | Path) -> None:
        """Write one token per line; a crash leaves the old file or the new one, never half of one."""
        bad = next((t for t in self.tokens if "\n" in t or "\r" in t or t == ""), None)
        if bad is not None:
            raise ValueError(f"token {bad!r} of {self.source} cannot be written one per line")
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token in self.tokens))

    @classmethod
    def build(
        cls,
        lines: Iterable[str],
        tokenizer_fn: Callable[[str], list[str]],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    ) -> "Vocab":
        """Count ``tokenizer_fn(line)`` over ``lines``: specials first (in the given order), then
        tokens seen ``min_count`` times or more by descending count, ties broken by the token string,
        so the same corpus always gives the same ids. ``max_size`` caps the total, specials included.

        Example::

            vocab = Vocab.build(open("corpus.txt", encoding="utf-8"), str.split, min_count=2)
        """
        if len(set(specials)) != len(specials):
            raise ValueError(f"a special token is listed twice: {list(specials)}")
        if max_size is not None and max_size < len(specials):
            raise ValueError(f"max_size {max_size} is smaller than the {len(specials)} special tokens")
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(tokenizer_fn(line))
        special_set = set(specials)
        ranked = sorted(
            (token for token, count in counts.items() if count >= min_count and token not in special_set),
            key=lambda token: (-counts[token], token),
        )
        tokens = list(specials) + ranked
        if max_size is not None:
            tokens = tokens[:max_size]
        return cls(tokens, source="<built>")

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __iter__(self):
        return iter(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.tokens == other.tokens and self.special_tokens == other.special_tokens

    __hash__ = None  # mutable-looking container compared by value

    def __repr__(self) -> str:
        return f"Vocab({len(self.tokens)} tokens from {self.source})"

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"id {i} is outside vocabulary {self.source} (size {len(self.tokens)})")
        return self.tokens[i]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; an unknown token gets :attr:`unk_id`."""
        get = self.index.get
        ids = [get(token, -1) for token in tokens]
        if -1 in ids:  # resolve [UNK] only when needed: a vocabulary without one still encodes known tokens
            unk = self.unk_id
            ids = [unk if i == -1 else i for i in ids]
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    # ------------------------------------------------------------------ special tokens
    def special_token(self, role: str) -> str:
        """The string playing ``role`` (``pad``, ``unk``, ``cls``, ``sep``, ``mask``); it must be in the vocabulary."""
        if role not in BERT_SPECIALS:
            raise ValueError(f"unknown special-token role {role!r}; valid roles: {', '.join(BERT_SPECIALS)}")
        token = self.special_tokens.get(role)
        if token is None:
            raise ValueError(f"vocabulary {self.source} names no {role} token")
        if token not in self.index:
            raise ValueError(f"vocabulary {self.source} has no {token!r} token (needed as the {role} token)")
        return token

    def special_id(self, role: str) -> int:
        return self.index[self.special_token(role)]

    @property
    def pad_id(self) -> int:
        return self.special_id("pad")

    @property
    def unk_id(self) -> int:
        return self.special_id("unk")

    @property
    def cls_id(self) -> int:
        return self.special_id("cls")

    @property
    def sep_id(self) -> int:
        return self.special_id("sep")

    @property
    def mask_id(self) -> int:
        return self.special_id("mask")

    @property
    def unk_token(self) -> str:
        return self.special_token("unk")
