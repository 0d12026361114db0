from __future__ import annotations

from uer.data.processors.base import ProcessorConfig, join
from uer.data.processors.registry import PROCESSORS
from uer.data.processors.sentence_pair import PairProcessor


@PROCESSORS.register("bert", config=ProcessorConfig)
class BertProcessor(PairProcessor):
    """Next sentence prediction: 0 = B follows A in the document, 1 = B from another document."""

    layout = "documents"
    targets = frozenset({"mlm", "nsp"})
    masked = True
    label_key = "tgt_nsp"

    def pair(self, chunk, a_end, target):
        a = join(chunk[:a_end])
        if len(chunk) == 1 or self.rng.random() < 0.5:
            if not self.recent:  # the worker's first document: nothing to draw from yet
                if len(chunk) == 1:
                    self.stats.drop("single-sentence chunk before any other document was read")
                    return None
                return a, join(chunk[a_end:]), 0, 0
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
            return a, join(parts), 1, len(chunk) - a_end
        return a, join(chunk[a_end:]), 0, 0
