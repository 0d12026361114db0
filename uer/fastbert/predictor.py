"""The application API: load a trained FastBERT, predict at the speed you chose.

    clf = FastBertClassifier.load("out/fastbert/model.pt")
    out = clf.predict(["what a lovely day", "the bus is late again"], speed=0.3)
    out.labels, out.probabilities, out.exit_layers

A sample's result does not depend on the other texts in the call (see :mod:`uer.fastbert.inference`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from uer.checkpoint import checkpoint_config, load_state, read_checkpoint
from uer.fastbert.build import build_fastbert
from uer.fastbert.data import Encoded, collate, encode_texts, length_sorted_batches
from uer.fastbert.inference import EarlyExit, ExitResult


@dataclass
class Predictions:
    labels: list[str]  # the predicted label of each text
    probabilities: torch.Tensor  # (N, labels) at the exit layer; columns follow ``FastBertClassifier.labels``
    exit_layers: list[int]  # 1-based


class FastBertClassifier:
    def __init__(self, model, tokenizer, labels: Sequence[str], seq_length: int, fast: bool = True) -> None:
        self.runner = EarlyExit(model, fused=fast)
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.seq_length = seq_length

    @classmethod
    def load(cls, path: str | Path, vocab_path: str | Path | None = None, fast: bool = True,
             device: str | torch.device = "cpu") -> "FastBertClassifier":
        """A checkpoint written by ``run_fastbert.py``; its vocabulary lies beside it unless given."""
        from uer.tokenizers import build_tokenizer

        path = Path(path)
        state = read_checkpoint(path)
        config = checkpoint_config(state, path)
        extra = state["extra"]
        for key in ("labels", "vocab_size", "seq_length", "vocab_file"):
            if key not in extra:
                raise ValueError(f"{path} was not written by run_fastbert.py (no {key!r} in it)")
        model = build_fastbert(config, vocab_size=extra["vocab_size"], labels_num=len(extra["labels"]))
        load_state(model, state["model"], str(path), config.source)
        model.to(device)
        tokenizer = build_tokenizer(config.tokenizer, vocab_path=vocab_path or path.parent / extra["vocab_file"])
        if len(tokenizer.vocab) != extra["vocab_size"]:
            raise ValueError(f"vocabulary has {len(tokenizer.vocab)} tokens, the model {extra['vocab_size']}")
        return cls(model, tokenizer, extra["labels"], extra["seq_length"], fast=fast)

    def encode(self, texts: Sequence[str | tuple[str, str]]) -> Encoded:
        pairs = [(t, None) if isinstance(t, str) else (t[0], t[1]) for t in texts]
        ids, segs = encode_texts(self.tokenizer, pairs, self.seq_length)
        return Encoded(ids, segs, None)

    def predict_encoded(self, encoded: Encoded, speed: float, batch_size: int = 32) -> ExitResult:
        if not 0.0 <= speed <= 1.0:
            raise ValueError(f"speed must lie in [0, 1], got {speed}")
        n = len(encoded)
        probs = torch.empty(n, len(self.labels))
        layers = torch.empty(n, dtype=torch.long)
        pad_id = self.tokenizer.vocab.pad_id
        for index in length_sorted_batches(encoded.lengths(), batch_size):  # similar lengths: little padding
            batch = collate(encoded, index, pad_id, self.runner.device)
            out = self.runner.predict(batch["src"], batch["seg"], speed)
            probs[index] = out.probs.cpu()
            layers[index] = out.exit_layer.cpu()
        return ExitResult(probs, layers)

    def predict(self, texts: Sequence[str | tuple[str, str]], speed: float = 0.0, batch_size: int = 32) -> Predictions:
        """``texts``: strings, or ``(text_a, text_b)`` pairs for a pair classifier."""
        out = self.predict_encoded(self.encode(texts), speed, batch_size)
        return Predictions([self.labels[i] for i in out.probs.argmax(-1).tolist()], out.probs, out.exit_layer.tolist())
