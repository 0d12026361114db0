"""Sentence pairs ``[CLS] A [SEP] B [SEP]`` for bert (nsp) and albert (sop).

BERT's ``create_instances_from_document``: sentences are gathered until a target length
(``seq_length - 3``, or with ``short_seq_prob`` a random shorter one), split at a random sentence,
and the pair is truncated from a random end. The random "next sentence" (bert) comes from a
bounded buffer of the worker's recent documents instead of the whole corpus, so memory does not
grow with the corpus.
"""
from __future__ import annotations

from collections import deque
from typing import Iterator

from uer.data.dataset import Instance
from uer.data.processors.base import Processor, Sentence


class PairProcessor(Processor):
    """Shared by bert (random next sentence) and albert (swapped order)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recent: deque[list[Sentence]] = deque(maxlen=self.cfg.buffer_documents)

    def _truncate(self, a: Sentence, b: Sentence, max_tokens: int) -> tuple[Sentence, Sentence]:
        """BERT's rule: while the pair is too long, drop one token from the longer side (B on a tie),
        from its front or its back at random. Computed in closed form: the longer side first loses
        the difference, the rest is shared; each side's front/back split is Binomial(n, 1/2)."""
        la, lb = len(a), len(b)
        excess = la + lb - max_tokens
        if excess <= 0:
            return a, b
        gap = min(abs(la - lb), excess)
        cut_a = gap if la > lb else 0
        cut_b = gap if lb >= la else 0
        rest = excess - gap
        cut_a += rest // 2
        cut_b += rest - rest // 2
        self.stats["truncated_instances"] += 1
        self.stats["truncated_tokens"] += excess

        def cut(s: Sentence, n: int) -> Sentence:
            front = int(self.rng.binomial(n, 0.5)) if n else 0
            i, j = front, len(s) - (n - front)
            return s.cut(i, j)

        return cut(a, cut_a), cut(b, cut_b)

    def pair(self, chunk: list[Sentence], a_end: int, target: int) -> tuple[Sentence, Sentence, int, int] | None:
        """(A, B, label, sentences of the chunk to read again) or None to drop the chunk."""
        raise NotImplementedError

    def feed(self, doc: list[Sentence]) -> Iterator[Instance]:
        max_tokens = self.seq_length - 3
        target = max_tokens
        if self.rng.random() < self.cfg.short_seq_prob:
            target = int(self.rng.integers(2, max_tokens + 1))
        chunk: list[Sentence] = []
        length = 0
        i = 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                a_end = 1 if len(chunk) < 2 else int(self.rng.integers(1, len(chunk)))
                made = self.pair(chunk, a_end, target)
                if made is not None:
                    a, b, label, put_back = made
                    i -= put_back
                    if len(a) and len(b):
                        a, b = self._truncate(a, b, max_tokens)
                        yield self._instance(a, b, label)
                    else:
                        self.stats.drop("a side of the pair is empty")
                chunk, length = [], 0
            i += 1
        self.recent.append(doc)
