"""What every processor is and shares: its facts, its options, how it reads a corpus, instances."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from uer.data import corpus as corpus_lib
from uer.data.dataset import Instance


@dataclass(frozen=True)
class ProcessorConfig:
    """The options every processor takes (``PROCESSORS.build({"name": "bert", "seq_length": 64}, ...)``)."""

    seq_length: int = 128
    short_seq_prob: float = 0.1  # sentence pairs: chance of a shorter target length
    buffer_documents: int = 100  # bert: recent documents the random "next sentence" comes from

    def __post_init__(self) -> None:
        if self.seq_length < 8:
            raise ValueError(f"seq_length {self.seq_length} is too short (>= 8)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must lie in [0, 1], got {self.short_seq_prob}")


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


@dataclass
class Sentence:
    ids: np.ndarray  # (L,) int64
    starts: np.ndarray | None  # (L,) bool word starts, or None without word boundaries

    def __len__(self) -> int:
        return len(self.ids)

    def cut(self, i: int, j: int) -> "Sentence":
        return Sentence(self.ids[i:j], None if self.starts is None else self.starts[i:j])


def join(parts: list[Sentence]) -> Sentence:
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, np.int64)
    starts = None if not parts or parts[0].starts is None else np.concatenate([p.starts for p in parts])
    return Sentence(ids, starts)


class Stats(Counter):
    """documents, lines, instances, tokens, unk_tokens, truncated_*; ``dropped: <reason>`` keys."""

    def drop(self, reason: str, n: int = 1) -> None:
        self[f"dropped: {reason}"] += n


@dataclass(frozen=True)
class Plan:
    """How a corpus will be read, decided (and checked) once in the main process, then given to
    every worker: made by ``Processor.plan``, read by ``Processor.read``."""

    path: str
    blank_separated: bool  # documents are separated by blank lines (shard edges move to them)
    description: str  # printed: "reading <corpus> as: ..."
    labels: tuple[str, ...] = ()  # labelled rows: the label strings; a label's id is its index
    reader: Any = None  # the processor's own row parser (cls: a uer.data.tsv.TsvReader)
    dropped: tuple[tuple[str, int], ...] = ()  # rows skipped while planning: (reason, count)
    notes: tuple[str, ...] = ()  # lines to show the user


Encode = Callable[[str], Sentence]


class Processor:
    """Documents (or rows) -> training instances.

    A subclass states its facts as class attributes and registers itself on ``PROCESSORS``; the
    pipeline asks these facts, never the name. ``read`` turns a worker's byte range of the corpus
    into the units that ``feed`` takes, so each processor reads its own layout."""

    layout: ClassVar[str]  # the corpus layout (uer.data.corpus.LAYOUTS)
    targets: ClassVar[frozenset[str]]  # the target set a config must have for this processor
    masked: ClassVar[bool] = False  # instances feed an MLM target (masking, word starts)
    label_key: ClassVar[str | None] = None  # batch key of the per-instance label; None: unlabelled

    def __init__(self, cfg: ProcessorConfig, ids: SpecialIds, rng: np.random.Generator, stats: Stats) -> None:
        self.cfg = cfg
        self.seq_length = cfg.seq_length
        self.ids, self.rng, self.stats = ids, rng, stats

    @classmethod
    def plan(cls, path: str, skip_malformed: bool = False) -> Plan:
        """Check the corpus layout from its head and say how it will be read (fails early, clearly)."""
        layout = corpus_lib.inspect(path, cls.layout)
        return Plan(str(path), layout.blank_separated, layout.description)

    @classmethod
    def read(cls, shard: corpus_lib.Shard, plan: Plan, encode: Encode, stats: Stats, progress=None) -> Iterator[Any]:
        """A worker's documents, each a list of non-empty encoded lines."""
        for unit in corpus_lib.read_units(shard, plan.blank_separated, progress):
            stats["documents"] += 1
            stats["lines"] += len(unit)
            doc = [s for s in (encode(line) for line in unit) if len(s)]
            if not doc:
                stats.drop("document without tokens")
                continue
            yield doc

    def feed(self, unit: Any) -> Iterator[Instance]:
        """One unit from ``read`` -> the instances it completes."""
        raise NotImplementedError

    def finish(self) -> Iterator[Instance]:
        """Instances still buffered at the end of the worker's range."""
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
