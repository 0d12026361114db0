"""Documents -> training instances, one processor per pre-training target set.

=========  ==========  =========================================================================
name       targets     instance
=========  ==========  =========================================================================
bert       mlm + nsp   [CLS] A [SEP] B [SEP]; B follows A (label 0) or comes from another document (1)
albert     mlm + sop   [CLS] A [SEP] B [SEP]; A, B consecutive, in order (label 0) or swapped (1)
mlm        mlm         [CLS] tokens [SEP] packed to full length across documents ([SEP] between them)
lm         lm          as mlm, unmasked (the target predicts each next token of ``src``)
bilm       bilm        as lm
cls        cls         [CLS] text_a [SEP] (text_b [SEP]); the label
=========  ==========  =========================================================================

The pair processors follow BERT's ``create_instances_from_document``: sentences are gathered
until a target length (``seq_length - 3``, or with ``short_seq_prob`` a random shorter one), split
at a random sentence, and the pair is truncated from a random end. The random "next sentence"
comes from a bounded buffer of the worker's recent documents instead of the whole corpus, so
memory does not grow with the corpus.
"""
from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from uer.data.dataset import Instance

PROCESSORS = ("bert", "albert", "mlm", "lm", "bilm", "cls")
# processor -> the corpus layout it reads (uer.data.corpus.LAYOUTS)
LAYOUT = {"bert": "documents", "albert": "documents", "mlm": "lines", "lm": "lines", "bilm": "lines", "cls": "tsv"}
MASKED = {"bert", "albert", "mlm"}  # processors whose instances feed an MLM target
LABELLED = {"bert", "albert", "cls"}
# the processor a config's target set implies
BY_TARGETS = {
    frozenset({"mlm", "nsp"}): "bert",
    frozenset({"mlm", "sop"}): "albert",
    frozenset({"mlm"}): "mlm",
    frozenset({"lm"}): "lm",
    frozenset({"bilm"}): "bilm",
    frozenset({"cls"}): "cls",
}


def processor_for_targets(targets: list[str]) -> str:
    key = frozenset(targets)
    if key not in BY_TARGETS:
        known = "; ".join(f"{'+'.join(sorted(k))} -> {v}" for k, v in BY_TARGETS.items())
        raise ValueError(f"no data processor for targets {'+'.join(sorted(key))}; pass --data_processor ({known})")
    return BY_TARGETS[key]


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    mask: int
    unk: int

    @classmethod
    def from_vocab(cls, vocab) -> "SpecialIds":
        return cls(vocab.cls_id, vocab.sep_id, vocab.pad_id, vocab.mask_id, vocab.unk_id)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class TextEncoder:
    """Text -> ids, and with ``word_boundaries`` a word-start flag per id.

    Word boundaries (whole-word and span masking): Chinese text is segmented into words by jieba
    (dictionary + HMM, deterministic, no model download; Chinese BERT-wwm used LTP, which needs a
    separately downloaded model), then each word is tokenized on its own so every token knows its
    word. WordPiece's ``##`` pieces and sentencepiece's pieces without ``▁`` continue a word.
    """

    def __init__(self, tokenizer, kind: str, word_boundaries: bool) -> None:
        self.tokenizer = tokenizer
        self.kind = kind
        self.word_boundaries = word_boundaries
        self.vocab = tokenizer.vocab
        if word_boundaries:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            self._cut = jieba.lcut

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.word_boundaries:
            return np.asarray(self.tokenizer.encode(text), dtype=np.int64), None
        if self.kind == "sentencepiece":
            pieces = self.tokenizer.tokenize(text)
            ids = self.vocab.convert_tokens_to_ids(pieces)
            return np.asarray(ids, dtype=np.int64), np.asarray([p.startswith("\u2581") for p in pieces], dtype=bool)
        ids: list[int] = []
        starts: list[bool] = []
        words = self._cut(text) if _CJK.search(text) else text.split()
        for word in words:
            pieces = self.tokenizer.tokenize(word)
            for j, piece in enumerate(pieces):
                starts.append(j == 0 and not piece.startswith("##"))
            ids.extend(self.vocab.convert_tokens_to_ids(pieces))
        return np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=bool)


@dataclass
class Sentence:
    ids: np.ndarray
    starts: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)


def _join(parts: list[Sentence]) -> Sentence:
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, np.int64)
    starts = None if not parts or parts[0].starts is None else np.concatenate([p.starts for p in parts])
    return Sentence(ids, starts)


class Stats(Counter):
    """documents, sentences, instances, tokens, unk_tokens, truncated_*; ``dropped: <reason>`` keys."""

    def drop(self, reason: str, n: int = 1) -> None:
        self[f"dropped: {reason}"] += n


class Processor:
    name: str

    def __init__(self, seq_length: int, ids: SpecialIds, rng: np.random.Generator, stats: Stats,
                 short_seq_prob: float = 0.1, buffer_documents: int = 100) -> None:
        if seq_length < 8:
            raise ValueError(f"seq_length {seq_length} is too short (>= 8)")
        self.seq_length, self.ids, self.rng, self.stats = seq_length, ids, rng, stats
        self.short_seq_prob = short_seq_prob
        self.buffer_documents = buffer_documents

    def feed(self, doc: list[Sentence]) -> Iterator[Instance]:
        raise NotImplementedError

    def finish(self) -> Iterator[Instance]:
        return iter(())

    def _instance(self, a: Sentence, b: Sentence | None, label: int = -1) -> Instance:
        cls, sep = np.array([self.ids.cls]), np.array([self.ids.sep])
        parts = [cls, a.ids, sep] + ([b.ids, sep] if b is not None else [])
        tokens = np.concatenate(parts)
        starts = None
        if a.starts is not None:
            one = np.ones(1, dtype=bool)
            starts = np.concatenate([one, a.starts, one] + ([b.starts, one] if b is not None else []))
        self.stats["instances"] += 1
        self.stats["tokens"] += len(tokens)
        return Instance(tokens, seg_a=len(a) + 2, label=label, word_starts=starts)


class PairProcessor(Processor):
    """Shared by bert (random next sentence) and albert (swapped order)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recent: deque[list[Sentence]] = deque(maxlen=self.buffer_documents)

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
            return Sentence(s.ids[i:j], None if s.starts is None else s.starts[i:j])

        return cut(a, cut_a), cut(b, cut_b)

    def pair(self, chunk: list[Sentence], a_end: int, target: int) -> tuple[Sentence, Sentence, int, int] | None:
        """(A, B, label, sentences of the chunk to read again) or None to drop the chunk."""
        raise NotImplementedError

    def feed(self, doc: list[Sentence]) -> Iterator[Instance]:
        max_tokens = self.seq_length - 3
        target = max_tokens
        if self.rng.random() < self.short_seq_prob:
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


class BertProcessor(PairProcessor):
    """Next sentence prediction: 0 = B follows A in the document, 1 = B from another document."""

    name = "bert"

    def pair(self, chunk, a_end, target):
        a = _join(chunk[:a_end])
        if len(chunk) == 1 or self.rng.random() < 0.5:
            if not self.recent:  # the worker's first document: nothing to draw from yet
                if len(chunk) == 1:
                    self.stats.drop("single-sentence chunk before any other document was read")
                    return None
                return a, _join(chunk[a_end:]), 0, 0
            other = self.recent[int(self.rng.integers(len(self.recent)))]
            start = int(self.rng.integers(len(other)))
            want = max(1, target - len(a))
            parts, n = [], 0
            for s in other[start:]:
                parts.append(s)
                n += len(s)
                if n >= want:
                    break
            # the sentences of this chunk after A were not used: read them again
            return a, _join(parts), 1, len(chunk) - a_end
        return a, _join(chunk[a_end:]), 0, 0


class AlbertProcessor(PairProcessor):
    """Sentence order prediction: 0 = A then B as written, 1 = swapped."""

    name = "albert"

    def pair(self, chunk, a_end, target):
        if len(chunk) == 1:  # one long sentence: split it at a random token
            s = chunk[0]
            if len(s) < 2:
                self.stats.drop("single-token document")
                return None
            cut = int(self.rng.integers(1, len(s)))
            a = Sentence(s.ids[:cut], None if s.starts is None else s.starts[:cut])
            b = Sentence(s.ids[cut:], None if s.starts is None else s.starts[cut:])
        else:
            a, b = _join(chunk[:a_end]), _join(chunk[a_end:])
        if self.rng.random() < 0.5:
            return b, a, 1, 0
        return a, b, 0, 0


class PackedProcessor(Processor):
    """Full-length sequences: the token stream of all documents ([SEP] between documents) cut into
    ``[CLS] body [SEP]`` pieces of exactly ``seq_length`` tokens; only each worker's tail is shorter."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ids_buf: list[np.ndarray] = []
        self.starts_buf: list[np.ndarray] = []
        self.buffered = 0
        self.body = self.seq_length - 2

    def _emit(self, n: int) -> Instance:
        ids = np.concatenate(self.ids_buf)
        starts = np.concatenate(self.starts_buf) if self.starts_buf else None
        self.ids_buf = [ids[n:]]
        self.starts_buf = [starts[n:]] if starts is not None else []
        self.buffered = len(ids) - n
        return self._instance(Sentence(ids[:n], None if starts is None else starts[:n]), None)

    def feed(self, doc: list[Sentence]) -> Iterator[Instance]:
        sep = np.array([self.ids.sep])
        for s in doc:
            self.ids_buf.append(s.ids)
            if s.starts is not None:
                self.starts_buf.append(s.starts)
            self.buffered += len(s)
        if self.buffered:  # a document boundary inside the stream
            self.ids_buf.append(sep)
            if self.starts_buf:
                self.starts_buf.append(np.ones(1, dtype=bool))
            self.buffered += 1
        while self.buffered >= self.body:
            yield self._emit(self.body)

    def finish(self) -> Iterator[Instance]:
        if self.buffered > 1:
            self.stats["short_tail_instances"] += 1
            yield self._emit(self.buffered - 1)  # the trailing document [SEP] is the instance's own


class MlmProcessor(PackedProcessor):
    name = "mlm"


class LmProcessor(PackedProcessor):
    name = "lm"


class BilmProcessor(PackedProcessor):
    name = "bilm"


class ClsProcessor(Processor):
    """``label<TAB>text_a[<TAB>text_b]`` -> [CLS] a [SEP] (b [SEP]), truncated to ``seq_length``."""

    name = "cls"

    def feed(self, doc: list[Sentence]) -> Iterator[Instance]:
        raise TypeError("ClsProcessor reads labelled rows: use feed_row")

    def feed_row(self, label: int, a: Sentence, b: Sentence | None) -> Iterator[Instance]:
        budget = self.seq_length - (3 if b is not None else 2)
        n = len(a) + (len(b) if b is not None else 0)
        if n > budget:
            self.stats["truncated_instances"] += 1
            self.stats["truncated_tokens"] += n - budget
            if b is None:
                a = Sentence(a.ids[:budget], None if a.starts is None else a.starts[:budget])
            else:
                keep_a = min(len(a), max(budget - len(b), budget // 2))
                a = Sentence(a.ids[:keep_a], None if a.starts is None else a.starts[:keep_a])
                keep_b = budget - len(a)
                b = Sentence(b.ids[:keep_b], None if b.starts is None else b.starts[:keep_b])
        if len(a) == 0:
            self.stats.drop("empty text_a")
            return
        yield self._instance(a, b, label)


CLASSES = {c.name: c for c in (BertProcessor, AlbertProcessor, MlmProcessor, LmProcessor, BilmProcessor, ClsProcessor)}


def make_processor(name: str, *args, **kwargs) -> Processor:
    if name not in CLASSES:
        raise ValueError(f"unknown data processor {name!r}; valid: {', '.join(PROCESSORS)}")
    return CLASSES[name](*args, **kwargs)
