"""The application API: load a trained FastBERT, predict at the speed you chose.

    clf = FastBertClassifier.load("out/fastbert/model.pt")
    out = clf.predict(["what a lovely day", "the bus is late again"], speed=0.3)
    out.labels, out.probabilities, out.exit_layers
    clf.predict("one text", speed=0.3)              # a single string is one text, not its characters

A sample's result does not depend on the other texts in the call (see :mod:`uer.fastbert.inference`).
Bad arguments are a ``TypeError`` (wrong kind of value) or a ``ValueError`` (right kind, bad value)
whose message names the argument and, for a text, its index.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from uer.checkpoint import CheckpointError, load_model, read_checkpoint
from uer.fastbert.build import position_limit
from uer.fastbert.data import Encoded, collate, encode_texts, length_sorted_batches
from uer.fastbert.evaluate import policy_kwargs, policy_names
from uer.fastbert.inference import EarlyExit, ExitResult, fastbert_target

RUN_KEYS = ("labels", "vocab_size", "seq_length", "vocab_file")  # what run_fastbert.py stores in every model


@dataclass
class Predictions:
    labels: list[str]  # the predicted label of each text
    probabilities: torch.Tensor  # (N, labels) at the exit layer; columns follow ``FastBertClassifier.labels``
    exit_layers: list[int]  # 1-based


def check_speed(speed: object) -> float:
    """A real number in [0, 1] (not a string, None or a bool)."""
    if isinstance(speed, bool) or not isinstance(speed, numbers.Real):
        raise TypeError(f"speed must be a number in [0, 1], got {type(speed).__name__} {speed!r}")
    if not 0.0 <= float(speed) <= 1.0:  # also refuses nan
        raise ValueError(f"speed must lie in [0, 1], got {speed}")
    return float(speed)


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an int >= 1, got {type(batch_size).__name__} {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def check_policy(policy: object) -> str:
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, one of {', '.join(policy_names())}; got {type(policy).__name__}")
    if policy not in policy_names():
        raise ValueError(f"policy {policy!r}: expected one of {', '.join(policy_names())}")
    return policy


def _check_path(path: object, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} is {type(value).__name__}, expected str")
    if not value.strip():
        raise ValueError(f"{where} is empty (or only whitespace): there is nothing to classify")
    return value


class FastBertClassifier:
    def __init__(self, model, tokenizer, labels: Sequence[str], seq_length: int, fused: bool = True,
                 pair: bool | None = None, runtime: str = "auto", quantize: str | None = None) -> None:
        self.runner = EarlyExit(model, runtime=runtime if fused else "eager", quantize=quantize)
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.seq_length = seq_length
        self.pair = pair  # trained on (text_a, text_b) pairs; None: not recorded (models before the flag)

    @classmethod
    def load(cls, path: str | os.PathLike, vocab_path: str | os.PathLike | None = None, fused: bool = True,
             device: str | torch.device = "cpu", runtime: str = "auto", quantize: str | None = None) -> "FastBertClassifier":
        """A checkpoint written by ``run_fastbert.py``; its vocabulary lies beside it unless given.

        ``runtime``: the engine of the exit steps (``uer.runtime.runtime_names()``; ``auto`` times the
        candidates on this machine); ``quantize="int8"``: int8 weights (never the default).
        ``fused=False`` is the old spelling of ``runtime="eager"``. ``clf.runtime`` says what runs."""
        from uer.tokenizers import build_tokenizer

        path = _check_path(path, "path")
        if vocab_path is not None:
            vocab_path = _check_path(vocab_path, "vocab_path")
        try:
            model, extra = load_model(path)
        except CheckpointError:
            raise
        except ValueError:  # the builder's complaint: no labels_num saved (a model from before it was)
            extra = read_checkpoint(path)["extra"]
            if "labels" not in extra:
                raise ValueError(f"{path} was not written by run_fastbert.py (no 'labels' in it)") from None
            model, extra = load_model(path, labels_num=len(extra["labels"]))
        for key in RUN_KEYS:
            if key not in extra:
                raise ValueError(f"{path} was not written by run_fastbert.py (no {key!r} in it)")
        fastbert_target(model)  # a model without the fastbert target is not one of ours either
        model.to(device)
        tokenizer = build_tokenizer(model.config.tokenizer, vocab_path=vocab_path or path.parent / extra["vocab_file"])
        if len(tokenizer.vocab) != extra["vocab_size"]:
            raise ValueError(f"vocabulary has {len(tokenizer.vocab)} tokens, the model {extra['vocab_size']}")
        limit = position_limit(model.config)  # models saved before run_fastbert.py checked seq_length against it
        seq_length = min(extra["seq_length"], limit) if limit is not None else extra["seq_length"]
        return cls(model, tokenizer, extra["labels"], seq_length, fused=fused, pair=extra.get("pair"),
                   runtime=runtime, quantize=quantize)

    @property
    def runtime(self) -> str:
        """The engine in effect and why, e.g. ``"onnxruntime: ONNX Runtime 1.32.0, int8 dynamic, ..."``."""
        return f"{self.runner.backend}: {self.runner.reason}"

    def _pairs(self, texts: object) -> list[tuple[str, str | None]]:
        """``texts`` -> ``[(text_a, text_b or None)]``, every item checked."""
        if isinstance(texts, str):
            texts = [texts]  # one text, never its characters
        elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a str or a sequence of str (or of (text_a, text_b) pairs), "
                            f"got {type(texts).__name__}")
        pairs = []
        for i, item in enumerate(texts):
            if isinstance(item, str):
                if self.pair:
                    raise ValueError(f"texts[{i}] is one text, but this model classifies (text_a, text_b) pairs")
                pairs.append((_text(item, f"texts[{i}]"), None))
            elif isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"texts[{i}] is a {type(item).__name__} of {len(item)}; expected a str or a "
                                     "(text_a, text_b) pair")
                if self.pair is False:
                    raise ValueError(f"texts[{i}] is a (text_a, text_b) pair, but this model classifies single texts")
                pairs.append((_text(item[0], f"texts[{i}][0]"), _text(item[1], f"texts[{i}][1]")))
            else:
                raise TypeError(f"texts[{i}] is {type(item).__name__}, expected str")
        return pairs

    def encode(self, texts: Sequence[str | tuple[str, str]]) -> Encoded:
        ids, segs = encode_texts(self.tokenizer, self._pairs(texts), self.seq_length)
        return Encoded(ids, segs, None)

    def predict_encoded(self, encoded: Encoded, speed: float, batch_size: int = 32, policy: str = "entropy") -> ExitResult:
        speed, batch_size, policy = check_speed(speed), check_batch_size(batch_size), check_policy(policy)
        n = len(encoded)
        probs = torch.empty(n, len(self.labels))
        layers = torch.empty(n, dtype=torch.long)
        pad_id = self.tokenizer.vocab.pad_id
        for index in length_sorted_batches(encoded.lengths(), batch_size):  # similar lengths: little padding
            batch = collate(encoded, index, pad_id, self.runner.device)
            out = self.runner.predict(batch["src"], batch["seg"], speed, **policy_kwargs(policy))
            probs[index] = out.probs.cpu()
            layers[index] = out.exit_layer.cpu()
        return ExitResult(probs, layers)

    def predict(self, texts: str | Iterable[str | tuple[str, str]], speed: float = 0.0, batch_size: int = 32,
                policy: str = "entropy") -> Predictions:
        """``texts``: one string, or strings, or ``(text_a, text_b)`` pairs for a pair classifier.

        ``speed`` in [0, 1]: 0 = the full model, higher = earlier exits; ``policy``: the exit rule."""
        speed, batch_size, policy = check_speed(speed), check_batch_size(batch_size), check_policy(policy)
        out = self.predict_encoded(self.encode(texts), speed, batch_size, policy)
        return Predictions([self.labels[i] for i in out.probs.argmax(-1).tolist()], out.probs, out.exit_layer.tolist())
