"""Put a trained model to work on unlabelled text: ``python -m uer predict MODEL --input FILE``.

One entry for both kinds of model, told apart by what their training run stored in the checkpoint
(``labels``: a FastBERT classifier from ``run_fastbert.py``; ``id2label``: a tagger from
``run_ner.py``)::

    model = load_predictor("out/fastbert/model.pt")
    model.predict(["what a lovely day"], speed=0.3)
    # [{"label": "positive", "probabilities": {"negative": 0.02, ...}, "exit_layer": 2}]

Input (:func:`read_inputs`): a TSV whose header names a ``text_a`` column (and ``text_b`` for a
pair model; every other column, a label column included, is carried into the output object under
its name, or as ``input_<name>`` where that name is one of the prediction's own keys), or plain
text with one input a line (a first line without a tab that is not the header ``text_a``).
Output: JSON Lines, one object a line, in input order (:func:`predict_stream`).
A malformed input is an :class:`InputError` naming ``file:line``.
"""
from __future__ import annotations

import io
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

CLASSIFIER, TAGGER = "classifier", "tagger"


class InputError(ValueError):
    """A malformed input file or row; the message starts with ``file:line``."""


# ==============================================================================================
# the two kinds of model behind one interface


def _policy_names(task: str) -> tuple[str, ...]:
    from uer.exit.policies import policy_names

    return policy_names(task)


class ClassifierModel:
    """A :class:`~uer.fastbert.predictor.FastBertClassifier` answering with plain objects, by task:
    ``{"label", "probabilities": {label: p}, "exit_layer"}`` (classification), ``{"labels": [...],
    "probabilities": {label: sigmoid}, "exit_layer"}`` (multi_label), ``{"value", "exit_layer"}``
    (regression).

    ``speed=None`` / ``policy=None`` mean what the training run stored (its chosen speed, its exit
    policy), as in the predictor; :meth:`settings` says what that is."""

    kind = CLASSIFIER

    def __init__(self, clf) -> None:
        self.clf = clf
        self.task = clf.task
        self.pair = bool(clf.pair)
        self.labels = list(clf.labels)
        self.layers_num = clf.runner.layers_num
        self.network = clf.runner.model  # the torch model, for the server's layer-by-layer engine
        self.policies = _policy_names(self.task)

    def settings(self, speed: Any = None, policy: Any = None):
        """``(speed, ExitPolicy)`` a call runs with: the given ones, else what the run stored."""
        from uer.exit.loading import exit_settings

        return exit_settings(self.clf.extra, speed, policy)

    def result(self, probs, exit_layer: int) -> dict[str, Any]:
        """A classifier's (labels,) softmax and a 1-based exit layer -> the answer for one text."""
        values = probs.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return {"label": self.labels[best], "probabilities": dict(zip(self.labels, values)), "exit_layer": int(exit_layer)}

    def predict(self, items: Sequence[str | tuple[str, str]], speed: float | None = None, policy: Any = None,
                batch_size: int = 32) -> list[dict[str, Any]]:
        out = self.clf.predict(list(items), speed=speed, batch_size=batch_size, policy=policy)
        if self.task == "multi_label":
            return [{"labels": labels, "probabilities": dict(zip(self.labels, p.tolist())), "exit_layer": e}
                    for labels, p, e in zip(out.label_sets, out.probabilities, out.exit_layers)]
        if self.task == "regression":
            return [{"value": v, "exit_layer": e} for v, e in zip(out.values, out.exit_layers)]
        return [self.result(p, e) for p, e in zip(out.probabilities, out.exit_layers)]


class TaggerModel:
    """A :class:`~uer.tagging.predictor.NerTagger`: entities with character offsets and the mean
    exit layer of the text's characters, or words for a word-level tagger (token-level exit: each
    leaves on its own).
    ``window=None``: the run's own window."""

    kind = TAGGER
    pair = False

    def __init__(self, tagger, window: int | None = None) -> None:
        self.tagger = tagger
        self.window = window
        self.layers_num = tagger.runner.layers_num
        self.policies = _policy_names("classification")  # token exit reads tag distributions

    def settings(self, speed: Any = None, policy: Any = None):
        from uer.exit.loading import exit_settings

        return exit_settings(self.tagger.extra, speed, policy)

    def predict(self, items: Sequence[str], speed: float | None = None, policy: Any = None,
                batch_size: int = 32) -> list[dict[str, Any]]:
        entities, exits = self.tagger.entities(list(items), speed, self.window, batch_size, policy)
        return [{"entities": [asdict(e) for e in found], "mean_exit_layer": sum(layers) / len(layers) if layers else None}
                for found, layers in zip(entities, exits)]


Predictor = ClassifierModel | TaggerModel


def model_kind(path: str | Path) -> str:
    """``classifier`` or ``tagger``, from what the training run stored in the checkpoint."""
    from uer.checkpoint import CheckpointError, read_checkpoint

    extra = read_checkpoint(path)["extra"]
    if "labels" in extra:
        return CLASSIFIER
    if "id2label" in extra:
        return TAGGER
    raise CheckpointError(f"{path} was written neither by run_fastbert.py (no 'labels' in it) "
                          "nor by run_ner.py (no 'id2label')")


def load_predictor(path: str | Path, runtime: str = "auto", window: int | None = None,
                   exit_plan: str = "stored") -> Predictor:
    """The model at ``path`` (its vocabulary beside it), whichever kind it is. ``exit_plan``: a
    classifier's (``FastBertClassifier.load``: stored, here or off); taggers have none."""
    if model_kind(path) == CLASSIFIER:
        from uer.fastbert.predictor import FastBertClassifier

        return ClassifierModel(FastBertClassifier.load(path, runtime=runtime, exit_plan=exit_plan))
    from uer.tagging.predictor import NerTagger

    return TaggerModel(NerTagger.load(path, runtime=runtime), window=window)


# ==============================================================================================
# input


@dataclass
class Row:
    line: int  # 1-based line number in the input
    item: str | tuple[str, str]  # what the model reads: text_a, or (text_a, text_b)
    carried: dict[str, str]  # the other columns, by name


class Inputs:
    """The rows of one input, read lazily line by line (constant memory on any size).

    ``name``: how messages name the input (``<stdin>`` for ``-``); ``pair``: the model reads
    (text_a, text_b) pairs, single texts, or (None, ``uer embed``) either, as the header says;
    ``columns``: the TSV header, or None for plain text; iterate for :class:`Row` s;
    ``bytes_read`` follows the progress."""

    def __init__(self, stream: IO[bytes], name: str, pair: bool | None) -> None:
        self.stream, self.name, self.pair = stream, name, pair
        self.bytes_read = 0
        first = stream.readline()
        self.bytes_read += len(first)
        self._first: bytes | None = None
        text = self._decode(first, 1).lstrip("\ufeff").rstrip("\r\n")
        if not text.strip() and not first:
            raise InputError(f"{name}: empty input; expected a TSV with a text_a column or one text a line")
        if "\t" in text or text.strip() == "text_a":
            self.columns: list[str] | None = [c.strip() for c in text.split("\t")]
            self._check_header()
        else:
            self.columns = None
            if pair:
                raise InputError(f"{name}:1: this model classifies (text_a, text_b) pairs: give a TSV whose header "
                                 "names text_a and text_b")
            self._first = first

    def _check_header(self) -> None:
        cols, where = self.columns, f"{self.name}:1"
        repeated = sorted({c for c in cols if cols.count(c) > 1})
        if repeated:
            raise InputError(f"{where}: column {repeated[0]!r} appears more than once in the header")
        if "text_a" not in cols:
            shown = "\\t".join(cols)
            raise InputError(f"{where}: the header '{shown}' has no text_a column")
        if self.pair and "text_b" not in cols:
            raise InputError(f"{where}: this model classifies (text_a, text_b) pairs, but the header has no text_b column")
        if self.pair is False and "text_b" in cols:
            raise InputError(f"{where}: the header has a text_b column, but this model reads single texts")
        self._a = cols.index("text_a")
        self._b = cols.index("text_b") if "text_b" in cols else None
        self._carried = [(i, c) for i, c in enumerate(cols) if c not in ("text_a", "text_b")]

    def _decode(self, raw: bytes, line: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.name}:{line}: not UTF-8 text") from None

    def _row(self, raw: bytes, line: int) -> Row:
        text = self._decode(raw, line).rstrip("\r\n")
        if self.columns is None:
            if line == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                raise InputError(f"{self.name}:{line}: empty line; every line must hold a text")
            return Row(line, text, {})
        fields = text.split("\t")
        if len(fields) != len(self.columns):
            raise InputError(f"{self.name}:{line}: {len(fields)} columns, the header has {len(self.columns)}")
        for i, col in ((self._a, "text_a"), (self._b, "text_b")):
            if i is not None and not fields[i].strip():
                raise InputError(f"{self.name}:{line}: empty {col}")
        item = fields[self._a] if self._b is None else (fields[self._a], fields[self._b])
        return Row(line, item, {c: fields[i] for i, c in self._carried})

    def __iter__(self) -> Iterator[Row]:
        blank: list[int] = []  # blank lines: harmless at the end of the input, an error before a row
        if self._first is None:  # a TSV: the header was line 1
            lines, number = self.stream, 1
        else:  # plain text: the first line is a text too (its bytes are counted already)
            lines, number = itertools.chain([self._first], self.stream), 0
            self.bytes_read -= len(self._first)
        for raw in lines:
            number += 1
            self.bytes_read += len(raw)
            if not raw.strip(b"\r\n \t"):
                blank.append(number)
                continue
            if blank:
                raise InputError(f"{self.name}:{blank[0]}: empty line; every line must hold a text")
            yield self._row(raw, number)


def open_input(path: str) -> tuple[IO[bytes], str]:
    """``-`` is standard input."""
    if path == "-":
        return sys.stdin.buffer, "<stdin>"
    return open(path, "rb"), str(path)


# ==============================================================================================
# output


def output_object(prediction: dict[str, Any], carried: dict[str, str]) -> dict[str, Any]:
    """The carried columns first (as the file had them), then the prediction; a carried column
    whose name the prediction uses (a ``label`` column beside the predicted label) is kept as
    ``input_<name>``, so neither is lost."""
    out = {(f"input_{k}" if k in prediction else k): v for k, v in carried.items()}
    out.update(prediction)
    return out


def predict_stream(model: Predictor, rows: Iterable[Row], out: IO[str], speed: float | None = None, policy: Any = None,
                   batch_size: int = 32, chunk: int = 1024, progress: Callable[[int], None] | None = None) -> int:
    """Predict ``rows`` in chunks of ``chunk`` and write one JSON line each to ``out``, in order.

    Memory stays bounded by one chunk whatever the input's size. Returns the number of rows.
    ``progress(n)`` is called after each chunk with the rows it held."""
    done = 0
    pending: list[Row] = []

    def flush() -> None:
        nonlocal done
        answers = model.predict([r.item for r in pending], speed, policy, batch_size)
        out.write("".join(json.dumps(output_object(a, r.carried), ensure_ascii=False) + "\n"
                          for a, r in zip(answers, pending)))
        done += len(pending)
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for row in rows:
        pending.append(row)
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return done


def input_size(stream: IO[bytes]) -> int | None:
    """Bytes in a regular file (for a progress bar); None for a pipe."""
    try:
        import os

        info = os.fstat(stream.fileno())
    except (OSError, io.UnsupportedOperation):
        return None
    import stat

    return info.st_size if stat.S_ISREG(info.st_mode) else None


# ==============================================================================================
# the command line: python -m uer predict


def add_arguments(p) -> None:
    """The flags of ``python -m uer predict`` on an argparse parser."""
    from uer.utils.cli import fraction, non_negative_int, positive_int

    p.add_argument("model_path", metavar="MODEL", help="a model.pt written by run_fastbert.py or run_ner.py (vocabulary beside it)")
    p.add_argument("--input", required=True, help="a TSV with a text_a column (text_b for pair models), "
                   "or plain text, one input a line; - is standard input")
    p.add_argument("--output", help="JSON Lines file (written whole or not at all); default: standard output")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--speed", type=fraction, default=None,
                   help="0 = the full model, higher exits earlier; default: the speed the training run chose (else 0)")
    p.add_argument("--policy", help="the exit policy; default: the one the model was trained with")
    p.add_argument("--window", type=non_negative_int, default=None, help="taggers: token exit's window; default: the run's")
    p.add_argument("--batch_size", type=positive_int, default=32)
    p.add_argument("--runtime", default="auto", help="the inference runtime (uer.runtime; default auto)")
    add_exit_plan_flag(p)


def add_exit_plan_flag(p) -> None:
    """``--exit_plan``, as ``uer predict`` and ``uer serve`` take it (torch-free, like the other flags)."""
    from uer.choices import EXIT_PLAN_USES

    p.add_argument("--exit_plan", choices=EXIT_PLAN_USES, default="stored",
                   help="classifiers: stored (default): early exit only from the speed on where the training run found "
                        "it faster than the full model; here: that decision re-measured on this machine; off: at every speed")


def command(args) -> int:
    """``python -m uer predict``: JSON Lines for every input line; one line and exit 2 on bad input."""
    from tqdm import tqdm

    from uer.checkpoint import CheckpointError
    from uer.utils.atomic import atomic_open
    from uer.utils.cli import UsageError, input_file, output_file

    model_path = input_file(args.model_path, "MODEL")
    if args.input != "-":
        input_file(args.input, "--input")
    if args.output is not None:
        out_path = output_file(args.output, "--output")  # not a directory, under a writable one
        if out_path.exists() and not args.force:  # what the user had stays theirs
            raise UsageError(f"--output {args.output} already exists; pass --force to replace it")
    try:
        model = load_predictor(model_path, runtime=args.runtime, window=args.window, exit_plan=args.exit_plan)
    except CheckpointError:
        raise
    except (ValueError, OSError) as exc:
        raise UsageError(f"MODEL {args.model_path}: {exc}") from None
    if args.policy is not None and args.policy not in model.policies:
        raise UsageError(f"--policy {args.policy!r}: valid policies: {', '.join(model.policies)}")
    try:  # what no --speed / --policy stand for; a policy without a speed may be refused, before any work
        speed, rule = model.settings(args.speed, args.policy)
    except ValueError as exc:
        raise UsageError(f"--policy {args.policy}: {exc}") from None
    stream, name = open_input(args.input)
    bar = tqdm(total=input_size(stream), unit="B", unit_scale=True, file=sys.stderr,
               disable=not sys.stderr.isatty(), desc="predict")
    try:
        inputs = Inputs(stream, name, model.pair)

        def run(out: IO[str]) -> int:
            return predict_stream(model, inputs, out, speed, rule, args.batch_size,
                                  progress=lambda rows: bar.update(inputs.bytes_read - bar.n))

        if args.output is None:
            count = run(sys.stdout)
            sys.stdout.flush()
        else:
            with atomic_open(out_path) as out:  # an error half-way leaves no half-written file
                count = run(out)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if args.output is not None:
        print(f"{count} predictions ({model.kind}, speed {speed:g}) written to {args.output}", file=sys.stderr)
    return 0
