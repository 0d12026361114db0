"""UER's classification TSV: a header ``label<TAB>text_a[<TAB>text_b]``, then one example a line.

    train = read_tsv("data/tweets/train.tsv")                       # labels taken from the file
    dev = read_tsv("data/tweets/dev.tsv", labels=train.labels)      # unknown label -> TsvError
    texts = read_tsv("data/unlabeled.tsv", labelled=False)          # ``text_a[\ttext_b]`` (a label column is ignored)
    tags = read_tsv("data/entity_types/train.tsv", task="multi_label")   # label ``LOC,PER`` (or empty: none)
    years = read_tsv("data/sotu_years/train.tsv", task="regression")     # label ``1862.0``

One set of rules, used by run_fastbert.py and by preprocess.py's ``cls`` processor alike:

- the file is read line by line as UTF-8 (a UTF-8 byte order mark is allowed); a line that is not
  UTF-8 is a malformed row, a header that is not UTF-8 ends the read;
- a label is the column's text without surrounding whitespace (``' 1 '`` is label ``1``; a note
  says so once per file if any label changed), and any string may be a label;
- a malformed row (not UTF-8, a blank line between rows, a wrong column count, an empty text, a
  label not in ``labels``) is a :class:`TsvError` naming ``file:line``; with ``skip_malformed=True``
  it is skipped and recorded in ``skipped`` instead, so the caller reports how many rows were
  dropped and why. Blank lines at the end of the file hold nothing and are ignored. Nothing is
  dropped silently;
- ``task="multi_label"`` (UER-py's multi-label format): the label column holds the row's labels
  separated by commas, each stripped of spaces; an **empty label column is a row with no label**
  (a sentence that has none of the properties is an example too). An empty item (``A,,B``) or a
  label listed twice is a malformed row;
- ``task="regression"``: the label column is a finite number (``float``); anything else is a
  malformed row.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

TASKS = ("classification", "multi_label", "regression")  # what the label column holds
SKIP_FLAG = "--skip_malformed"  # the flag of run_fastbert.py and preprocess.py that turns errors into skips


class TsvError(ValueError):
    """A malformed TSV file or row; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None = None
    label: str | None = None  # the label as written in the file, without surrounding whitespace
    labels: tuple[str, ...] | None = None  # multi_label: the row's labels (maybe none)
    value: float | None = None  # regression: the label as a number


@dataclass
class TsvData:
    path: str
    examples: list[Example]
    labels: tuple[str, ...]  # label strings; a label's id is its index here
    pair: bool  # the file has a text_b column
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    stripped_labels: int = 0  # rows whose label had whitespace around it
    task: str = "classification"  # one of TASKS

    def label_ids(self) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[e.label] for e in self.examples]

    def targets(self) -> list[int] | list[list[float]] | list[float]:
        """What a model learns from each row: the label id (classification), a 0/1 row over
        ``labels`` (multi_label) or the number (regression)."""
        if self.task == "regression":
            return [e.value for e in self.examples]
        if self.task == "multi_label":
            index = {label: i for i, label in enumerate(self.labels)}
            rows = []
            for e in self.examples:
                row = [0.0] * len(self.labels)
                for label in e.labels:
                    row[index[label]] = 1.0
                rows.append(row)
            return rows
        return self.label_ids()


def sort_labels(labels: set[str]) -> tuple[str, ...]:
    """Integers in numeric order (UER's ``0, 1, 2, ... 10``), otherwise alphabetical."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _not_utf8(path: Path, number: int, raw: bytes) -> str:
    hint = ""
    if number == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        hint = " (the file starts with a UTF-16 byte order mark: save it as UTF-8)"
    return f"{path}:{number}: not UTF-8 text{hint}"


def check_tsv_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise TsvError(f"{path} is a directory, expected a TSV file")
    if not path.is_file():
        raise TsvError(f"{path}: no such file")
    return path


class TsvReader:
    """The header of one TSV file and the rules for its rows.

    Iterating yields the usable rows as :class:`Example`; :meth:`parse` applies the same rules to
    one raw line, for workers that read a byte range of the file. The reader is small and pickles."""

    def __init__(self, path: str | Path, labels: Sequence[str] | None = None, labelled: bool = True,
                 skip_malformed: bool = False, task: str = "classification") -> None:
        if task not in TASKS:
            raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
        self.task = task
        self.path = check_tsv_path(path)
        self.labels = None if labels is None else tuple(labels)
        self.labelled = labelled
        self.skip_malformed = skip_malformed
        self.skipped: list[tuple[int, str]] = []
        self.stripped_labels = 0
        self.stripped_example: tuple[str, str] | None = None  # (as written, as read)
        with open(self.path, "rb") as f:
            first = f.readline()
        if not first:
            raise TsvError(f"{self.path}:1: empty file; expected a header 'label\\ttext_a[\\ttext_b]'")
        try:
            text = first.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise TsvError(_not_utf8(self.path, 1, first)) from None
        header = [h.strip() for h in text.lstrip("\ufeff").split("\t")]
        valid = (["label", "text_a"], ["label", "text_a", "text_b"])
        if not labelled:
            valid += (["text_a"], ["text_a", "text_b"])
        if header not in [list(h) for h in valid]:
            shown = " or ".join("'" + "\\t".join(h) + "'" for h in valid)
            raise TsvError(f"{self.path}:1: header {text!r} is not {shown}")
        self.header = header
        self.column = {name: i for i, name in enumerate(header)}
        self.pair = "text_b" in self.column

    def parse(self, raw: bytes) -> Example | str:
        """One line of the file (bytes, with or without its line break) -> an Example or the reason it is malformed."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8 text"
        line = line.rstrip("\r\n")
        if not line.strip():
            return "blank line"
        fields = line.split("\t")
        if len(fields) != len(self.header):
            return f"{len(fields)} columns, the header has {len(self.header)}"
        may_be_empty = "label" if self.task == "multi_label" else None  # no label is a multi-label row's answer too
        empty = next((c for c in self.header if c != may_be_empty and not fields[self.column[c]].strip()), None)
        if empty is not None:
            return f"empty {empty}"
        label, labels, value = None, None, None
        if self.labelled and "label" in self.column:
            written = fields[self.column["label"]]
            if self.task == "multi_label":
                parsed = self._label_set(written)
                if isinstance(parsed, str):
                    return parsed
                labels = parsed
                label = ",".join(labels)
            else:
                label = written.strip()
                if label != written:
                    self._stripped(written, label)
                if self.task == "regression":
                    try:
                        value = float(label)
                    except ValueError:
                        return f"label {label!r} is not a number (--task regression)"
                    if value != value or value in (float("inf"), float("-inf")):
                        return f"label {label!r} is not a finite number (--task regression)"
                elif self.labels is not None and label not in self.labels:
                    return f"label {label!r} is not one of {', '.join(self.labels)}"
        return Example(
            text_a=fields[self.column["text_a"]],
            text_b=fields[self.column["text_b"]] if self.pair else None,
            label=label, labels=labels, value=value,
        )

    def _stripped(self, written: str, read: str) -> None:
        self.stripped_labels += 1
        if self.stripped_example is None:
            self.stripped_example = (written, read)

    def _label_set(self, written: str) -> tuple[str, ...] | str:
        """A multi-label column -> its labels (``""``: none), or why it is malformed."""
        if not written.strip():
            return ()
        items = [item.strip() for item in written.split(",")]
        if any(item != raw for item, raw in zip(items, written.split(","))):
            self._stripped(written, ",".join(items))
        if "" in items:
            return f"label {written!r} has an empty item (labels are separated by single commas)"
        twice = next((item for i, item in enumerate(items) if item in items[:i]), None)
        if twice is not None:
            return f"label {twice!r} is listed twice in {written!r}"
        unknown = next((item for item in items if self.labels is not None and item not in self.labels), None)
        if unknown is not None:
            return f"label {unknown!r} is not one of {', '.join(self.labels)}"
        return tuple(items)

    def _reject(self, number: int, reason: str, raw: bytes) -> None:
        if not self.skip_malformed:
            where = _not_utf8(self.path, number, raw) if reason == "not UTF-8 text" else f"{self.path}:{number}: {reason}"
            raise TsvError(f"{where} (pass {SKIP_FLAG} to skip and count such rows)")
        self.skipped.append((number, reason))

    def __iter__(self) -> Iterator[Example]:
        blank: list[tuple[int, bytes]] = []  # blank lines seen since the last row: malformed only if a row follows
        with open(self.path, "rb") as f:
            f.readline()  # the header
            for number, raw in enumerate(f, start=2):
                parsed = self.parse(raw)
                if parsed == "blank line":
                    blank.append((number, raw))
                    continue
                for n, b in blank:
                    self._reject(n, "blank line", b)
                blank = []
                if isinstance(parsed, str):
                    self._reject(number, parsed, raw)
                else:
                    yield parsed

    def note(self) -> str | None:
        """The one line to tell the user when labels were stripped of whitespace (None if none were)."""
        if not self.stripped_labels:
            return None
        written, read = self.stripped_example
        return (f"{self.path}: note: {self.stripped_labels} labels had spaces around them and were read "
                f"without (e.g. {written!r} as {read!r})")


def final_labels(reader: TsvReader, found: set[str]) -> tuple[str, ...]:
    """The label set of a file's usable rows: the given ``labels``, or the ones found (>= 2 of them)."""
    if not reader.labelled or reader.task == "regression":
        return tuple(reader.labels or ())
    if reader.labels is not None:
        return reader.labels
    ordered = sort_labels(found)
    if len(ordered) < 2:
        kind = "a multi-label classifier" if reader.task == "multi_label" else "a classifier"
        raise TsvError(f"{reader.path}: {kind} needs at least 2 labels, found {list(ordered)}")
    return ordered


def read_tsv(
    path: str | Path,
    labels: Sequence[str] | None = None,
    labelled: bool = True,
    skip_malformed: bool = False,
    task: str = "classification",
) -> TsvData:
    """Read a UER classification TSV.

    ``labels``: the label set (from the training file); None takes the labels found in this file.
    ``labelled=False`` reads texts only: the header may be ``text_a[\\ttext_b]`` or a labelled one.
    ``task``: what the label column holds (:data:`TASKS`, see the module's docstring).
    """
    reader = TsvReader(path, labels, labelled, skip_malformed, task)
    examples = list(reader)
    if not examples:
        raise TsvError(f"{reader.path}: no usable rows ({len(reader.skipped)} skipped)")
    found = {x for e in examples for x in e.labels} if task == "multi_label" and labelled else {e.label for e in examples}
    label_set = final_labels(reader, found)
    note = reader.note()
    if note:
        print(note, file=sys.stderr)
    return TsvData(str(reader.path), examples, label_set, reader.pair, reader.skipped, reader.stripped_labels,
                   task if labelled else "classification")


def write_tsv(path: str | Path, rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """Write a TSV atomically; tabs and newlines inside a field are an error (they break the format)."""
    from uer.utils.atomic import atomic_open

    with atomic_open(path) as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            if len(row) != len(header):
                raise ValueError(f"row {row!r} has {len(row)} fields, the header has {len(header)}")
            for value in row:
                if "\t" in value or "\n" in value or "\r" in value:
                    raise ValueError(f"field {value!r} holds a tab or a newline")
            f.write("\t".join(row) + "\n")
