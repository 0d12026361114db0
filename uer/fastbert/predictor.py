"""The application API: load a trained FastBERT, predict at the speed you chose.

    clf = FastBertClassifier.load("out/fastbert/model.pt")
    out = clf.predict(["what a lovely day", "the bus is late again"])    # the run's policy and chosen speed
    out = clf.predict(["what a lovely day"], speed=0.3)                 # or a speed of yours
    out.labels, out.probabilities, out.exit_layers
    clf.predict("one text", speed=0.3)              # a single string is one text, not its characters
    tagger.predict(["..."]).label_sets, .probabilities   # multi_label: each text's labels, every label's sigmoid
    scorer.predict(["..."]).values                       # regression: each text's value, in the labels' units

Early exit runs only where it pays: at the speeds from the exit plan's ``from_speed`` on, which
the run decided on its dev set and stored (``run_fastbert.py --exit_plan``); below it ``predict``
runs the full model, faster there. ``load(..., exit_plan="here")`` re-measures that decision on
this machine, ``"off"`` exits early at every speed as the policy says.

``speed=None`` / ``policy=None`` mean what the run stored: the exit policy it trained with
(``run_fastbert.py --exit_policy``) and the speed it chose on its test set
(:func:`uer.exit.loading.exit_settings`). A sample's result does not depend on the other texts in
the call (see :mod:`uer.fastbert.inference`). Bad arguments are a ``TypeError`` (wrong kind of
value) or a ``ValueError`` (right kind, bad value) whose message names the argument and, for a
text, its index (:mod:`uer.exit.checks`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from uer.checkpoint import CheckpointError
from uer.exit.checks import check_int, check_text, check_texts
from uer.exit.loading import exit_settings, load_trained
from uer.data.loader import length_sorted_batches
from uer.fastbert.data import Encoded, collate, encode_texts
from uer.fastbert.inference import EarlyExit, ExitResult, fastbert_target
from uer.exit.policies import ExitPolicy
from uer.choices import EXIT_PLAN_USES


@dataclass
class Predictions:
    """What :meth:`FastBertClassifier.predict` returns, the same fields for every task
    (``clf.task``); the task-specific ones are None for the other tasks."""

    labels: list[str]  # the predicted label of each text; multi_label: its labels joined by commas ("" for none,
    # the TSV's format); regression: the value as text
    probabilities: torch.Tensor  # (N, labels) at the exit layer; columns follow ``FastBertClassifier.labels``
    # (multi_label: one sigmoid per label, each > 0.5 means the label is there; regression: (N, 1) the values)
    exit_layers: list[int]  # 1-based
    label_sets: list[list[str]] | None = None  # multi_label: each text's labels (threshold 0.5 per label)
    values: list[float] | None = None  # regression: each text's prediction, in the training labels' units


def _text(value: object, where: str) -> str:
    if not check_text(value, where).strip():
        raise ValueError(f"{where} is empty (or only whitespace): there is nothing to classify")
    return value


class FastBertClassifier:
    def __init__(self, model, tokenizer, labels: Sequence[str], seq_length: int, pair: bool | None = None,
                 runtime: str = "auto", quantize: str | None = None, extra: dict[str, Any] | None = None,
                 exit_plan: str = "stored") -> None:
        if exit_plan not in EXIT_PLAN_USES:
            raise ValueError(f"exit_plan {exit_plan!r}: expected one of {', '.join(EXIT_PLAN_USES)}")
        stored = None if exit_plan == "off" else (extra or {}).get("exit_plan")
        if exit_plan == "here" and stored is None:
            raise ValueError("exit_plan='here' re-measures the model's exit plan, but this model has none "
                             "(trained with --exit_plan always, or before exit plans): use 'stored' or 'off'")
        self.runner = EarlyExit(model, runtime=runtime, quantize=quantize, plan=stored)
        if exit_plan == "here":
            self.runner.replan()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.seq_length = seq_length
        self.pair = pair  # trained on (text_a, text_b) pairs; None: not recorded (models before the flag)
        self.extra = dict(extra or {})  # what the run stored: its exit policy and chosen speed are the defaults
        self.task = self.runner.target.task  # classification | multi_label | regression
        scale = self.extra.get("target_scale") or {"mean": 0.0, "std": 1.0}  # regression: the model predicts standardised
        self.scale = (float(scale["mean"]), float(scale["std"]))

    @classmethod
    def load(cls, path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", runtime: str = "auto", quantize: str | None = None,
             exit_plan: str = "stored") -> "FastBertClassifier":
        """A checkpoint written by ``run_fastbert.py``; its vocabulary lies beside it unless given
        (:func:`uer.exit.loading.load_trained` checks both).

        ``runtime``: the engine of the exit steps (``uer.runtime.runtime_names()``; ``auto`` times the
        candidates on this machine, ``eager`` is plain PyTorch); ``quantize="int8"``: int8 weights
        (never the default). ``clf.runtime`` says what runs. ``exit_plan``: ``stored`` (the run's
        decision where early exit pays), ``here`` (the run's exit profile, the costs measured on
        this machine and runtime now) or ``off`` (early exit at every speed)."""
        from uer.tokenizers import TOKENIZERS

        trained = load_trained(path, "run_fastbert.py", vocab_path=vocab_path, device=device)
        model, extra = trained.model, trained.extra
        fastbert_target(model)  # a model without the fastbert target is not one of ours either
        tokenizer_cls = TOKENIZERS.cls(trained.config.tokenizer.name)
        if not tokenizer_cls.reads_vocab_file:
            raise CheckpointError(f"{path}: tokenizer {trained.config.tokenizer.name!r} takes its vocabulary from a model "
                             "file, which FastBertClassifier does not load")
        tokenizer = tokenizer_cls.from_vocab(trained.vocab, trained.config.tokenizer)
        return cls(model, tokenizer, extra["labels"], trained.seq_length, pair=extra.get("pair"), runtime=runtime,
                   quantize=quantize, extra=extra, exit_plan=exit_plan)

    @property
    def runtime(self) -> str:
        """The engine in effect and why, e.g. ``"onnxruntime: ONNX Runtime 1.32.0, int8 dynamic, ..."``."""
        return f"{self.runner.name}: {self.runner.reason}"

    def _pairs(self, texts: object) -> list[tuple[str, str | None]]:
        """``texts`` -> ``[(text_a, text_b or None)]``, every item checked."""
        texts = check_texts(texts, items="str (or of (text_a, text_b) pairs)")
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

    def predict_encoded(self, encoded: Encoded, speed: float | None = None, batch_size: int = 32,
                        policy: str | dict | ExitPolicy | None = None) -> ExitResult:
        """:meth:`predict` on texts already encoded (:meth:`encode`); the same arguments. The raw
        outputs: a regression model's values are standardised (``value * std + mean``, ``self.scale``)."""
        speed, rule = self._settings(speed, policy)
        return self._run(encoded, speed, check_int(batch_size, "batch_size", 1), rule)

    def _settings(self, speed: object, policy: object) -> tuple[float, ExitPolicy]:
        speed, rule = exit_settings(self.extra, speed, policy)
        if rule.task != self.task:
            raise ValueError(f"policy {type(rule).__name__} reads {rule.task} outputs; this model's task is {self.task}")
        return speed, rule

    def _run(self, encoded: Encoded, speed: float, batch_size: int, rule: ExitPolicy) -> ExitResult:
        n = len(encoded)
        probs = torch.empty(n, self.runner.target.labels_num)
        layers = torch.empty(n, dtype=torch.long)
        pad_id = self.tokenizer.vocab.pad_id
        for index in length_sorted_batches(encoded.lengths(), batch_size):  # similar lengths: little padding
            batch = collate(encoded, index, pad_id, self.runner.device)
            out = self.runner.predict(batch["src"], batch["seg"], speed, policy=rule)
            probs[index] = out.probs.cpu()
            layers[index] = out.exit_layer.cpu()
        return ExitResult(probs, layers)

    def predict(self, texts: str | Iterable[str | tuple[str, str]], speed: float | None = None, batch_size: int = 32,
                policy: str | dict | ExitPolicy | None = None) -> Predictions:
        """``texts``: one string, or strings, or ``(text_a, text_b)`` pairs for a pair classifier.

        ``speed`` in [0, 1]: 0 = the full model, higher = earlier exits; None = the speed the run
        chose (0 if it chose none). ``policy``: the exit rule, a name (``uer.exit.policies``),
        a ``{"name": ...}`` mapping or a policy object; None = the one the run trained with."""
        speed, rule = self._settings(speed, policy)
        out = self._run(self.encode(texts), speed, check_int(batch_size, "batch_size", 1), rule)
        layers = out.exit_layer.tolist()
        if self.task == "multi_label":
            sets = [[label for label, p in zip(self.labels, row) if p > 0.5] for row in out.probs.tolist()]
            return Predictions([",".join(s) for s in sets], out.probs, layers, label_sets=sets)
        if self.task == "regression":
            values = out.probs * self.scale[1] + self.scale[0]  # (N, 1) in the labels' units
            return Predictions([f"{v:g}" for v in values[:, 0].tolist()], values, layers, values=values[:, 0].tolist())
        return Predictions([self.labels[i] for i in out.probs.argmax(-1).tolist()], out.probs, layers)
