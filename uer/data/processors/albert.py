from __future__ import annotations

from uer.data.processors.base import ProcessorConfig, join
from uer.data.processors.registry import PROCESSORS
from uer.data.processors.sentence_pair import PairProcessor


@PROCESSORS.register("albert", config=ProcessorConfig)
class AlbertProcessor(PairProcessor):
    """Sentence order prediction: 0 = A then B as written, 1 = swapped."""

    layout = "documents"
    targets = frozenset({"mlm", "sop"})
    masked = True
    label_key = "tgt_sop"

    def pair(self, chunk, a_end, target):
        if len(chunk) == 1:  # one long sentence: split it at a random token
            s = chunk[0]
            if len(s) < 2:
                self.stats.drop("single-token document")
                return None
            cut = int(self.rng.integers(1, len(s)))
            a, b = s.cut(0, cut), s.cut(cut, len(s))
        else:
            a, b = join(chunk[:a_end]), join(chunk[a_end:])
        if self.rng.random() < 0.5:
            return b, a, 1, 0
        return a, b, 0, 0
