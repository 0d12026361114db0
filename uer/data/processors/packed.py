"""Full-length packed sequences for mlm, lm and bilm: ``[CLS] tokens [SEP]`` cut from the stream of documents."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from uer.data.dataset import Instance
from uer.data.processors.base import Processor, ProcessorConfig, Sentence
from uer.data.processors.registry import PROCESSORS


class PackedProcessor(Processor):
    """Full-length sequences: the token stream of all documents ([SEP] between documents) cut into
    ``[CLS] body [SEP]`` pieces of exactly ``seq_length`` tokens; only each worker's tail is shorter."""

    layout = "lines"

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


@PROCESSORS.register("mlm", config=ProcessorConfig)
class MlmProcessor(PackedProcessor):
    """Packed full-length sequences, masked: every position can be a masked-LM target (~100% real tokens)."""

    targets = frozenset({"mlm"})
    masked = True


@PROCESSORS.register("lm", config=ProcessorConfig)
class LmProcessor(PackedProcessor):
    """Unmasked: the target predicts each next token of ``src``."""

    targets = frozenset({"lm"})


@PROCESSORS.register("bilm", config=ProcessorConfig)
class BilmProcessor(PackedProcessor):
    """Packed, unmasked, for the bidirectional LM: each direction predicts its next token."""

    targets = frozenset({"bilm"})
