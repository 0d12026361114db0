"""Classification rows ``label<TAB>text_a[<TAB>text_b]`` -> ``[CLS] a [SEP] (b [SEP])`` and the label id.

The corpus is a TSV read by the rules of :mod:`uer.data.tsv` (the header, UTF-8, label strings
without surrounding whitespace, ``--skip_malformed``), the same rules as run_fastbert.py's
files, and encoded by :func:`uer.data.text_pair.encode_pair`, the same layout and truncation as
FastBERT's. A label's id is its index in the sorted label set of the whole file (integers in
numeric order), which the main process finds once before the workers start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from uer.data import corpus as corpus_lib
from uer.data.dataset import Instance
from uer.data.processors.base import Encode, Plan, Processor, ProcessorConfig, Sentence, Stats
from uer.data.processors.registry import PROCESSORS
from uer.data.text_pair import encode_pair
from uer.data.tsv import Example, TsvError, TsvReader, final_labels


@dataclass
class Row:
    label: int  # index into Plan.labels
    a: Sentence
    b: Sentence | None


@PROCESSORS.register("cls", config=ProcessorConfig)
class ClsProcessor(Processor):
    """A labelled TSV (``label<TAB>text_a[<TAB>text_b]``) -> ``[CLS] a [SEP] (b [SEP])`` and the label."""

    layout = "tsv"
    targets = frozenset({"cls"})
    label_key = "tgt_cls"

    @classmethod
    def plan(cls, path: str, skip_malformed: bool = False) -> Plan:
        """Read the whole TSV once (streaming): every rule is checked here, with file:line, and the label set found."""
        reader = TsvReader(path, skip_malformed=skip_malformed)
        found: set[str] = set()
        rows = 0
        for example in reader:
            found.add(example.label)
            rows += 1
        if not rows:
            raise TsvError(f"{reader.path}: no usable rows ({len(reader.skipped)} skipped)")
        labels = final_labels(reader, found)
        dropped: dict[str, int] = {}
        for _, reason in reader.skipped:
            dropped[reason] = dropped.get(reason, 0) + 1
        note = reader.note()
        layout = "label<TAB>text_a<TAB>text_b" if reader.pair else "label<TAB>text_a"
        return Plan(str(path), False, f"a TSV of labelled rows ({layout}), labels {', '.join(labels)}",
                    labels=labels, reader=reader, dropped=tuple(dropped.items()), notes=(note,) if note else ())

    @classmethod
    def read(cls, shard: corpus_lib.Shard, plan: Plan, encode: Encode, stats: Stats, progress=None) -> Iterator[Row]:
        index = {label: i for i, label in enumerate(plan.labels)}
        lines = corpus_lib.read_lines(shard, progress)
        if shard.start == 0:
            next(lines, None)  # the header
        for raw in lines:
            example = plan.reader.parse(raw)
            if not isinstance(example, Example):
                continue  # malformed: refused or counted when the plan was made
            stats["documents"] += 1
            b = encode(example.text_b) if example.text_b is not None else None
            yield Row(index[example.label], encode(example.text_a), b)

    def feed(self, row: Row) -> Iterator[Instance]:
        if len(row.a) == 0:
            self.stats.drop("text_a without tokens")
            return
        ids, seg_a, cut = encode_pair(row.a.ids, None if row.b is None else row.b.ids, self.seq_length,
                                      self.ids.cls, self.ids.sep)
        if cut:
            self.stats["truncated_instances"] += 1
            self.stats["truncated_tokens"] += cut
        self.stats["instances"] += 1
        self.stats["tokens"] += len(ids)
        yield Instance(np.asarray(ids, dtype=np.int64), seg_a=seg_a, label=row.label)
