"""UER's classification TSV: a header ``label<TAB>text_a[<TAB>text_b]``, then one example a line.

    train = read_tsv("data/tweets/train.tsv")                       # labels taken from the file
    dev = read_tsv("data/tweets/dev.tsv", labels=train.labels)      # unknown label -> TsvError
    texts = read_tsv("data/unlabeled.tsv", labelled=False)          # ``text_a[\ttext_b]`` (a label column is ignored)

A malformed row (wrong column count, empty text, a label not in ``labels``) is a :class:`TsvError`
naming ``file:line``; with ``skip_malformed=True`` it is skipped and recorded in ``skipped``
instead, so the caller can report how many rows were dropped and why. Nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


class TsvError(ValueError):
    """A malformed TSV file or row; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None = None
    label: str | None = None  # the label as written in the file (UER writes integers)


@dataclass
class TsvData:
    path: str
    examples: list[Example]
    labels: tuple[str, ...]  # label strings; a label's id is its index here
    pair: bool  # the file has a text_b column
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def label_ids(self) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[e.label] for e in self.examples]


def sort_labels(labels: set[str]) -> tuple[str, ...]:
    """Integers in numeric order (UER's ``0, 1, 2, ... 10``), otherwise alphabetical."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def read_tsv(
    path: str | Path,
    labels: Sequence[str] | None = None,
    labelled: bool = True,
    skip_malformed: bool = False,
) -> TsvData:
    """Read a UER classification TSV.

    ``labels``: the label set (from the training file); None takes the labels found in this file.
    ``labelled=False`` reads texts only: the header may be ``text_a[\\ttext_b]`` or a labelled one.
    """
    path = Path(path)
    if not path.is_file():
        raise TsvError(f"{path}: no such file")
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise TsvError(f"{path}:1: empty file; expected a header 'label\\ttext_a[\\ttext_b]'")
    header = lines[0].rstrip("\r").split("\t")
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]  # a UTF-8 byte order mark
    valid_headers = (["label", "text_a"], ["label", "text_a", "text_b"])
    if not labelled:
        valid_headers += (["text_a"], ["text_a", "text_b"])
    if header not in [list(h) for h in valid_headers]:
        shown = " or ".join("'" + "\\t".join(h) + "'" for h in valid_headers)
        raise TsvError(f"{path}:1: header {lines[0]!r} is not {shown}")
    column = {name: i for i, name in enumerate(header)}
    pair = "text_b" in column
    known = None if labels is None else set(labels)
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        fields = line.split("\t")
        reason = None
        if len(fields) != len(header):
            reason = f"{len(fields)} columns, the header has {len(header)}"
        elif any(not fields[column[c]].strip() for c in header):
            empty = next(c for c in header if not fields[column[c]].strip())
            reason = f"empty {empty}"
        elif labelled and known is not None and fields[column["label"]] not in known:
            reason = f"label {fields[column['label']]!r} is not one of {', '.join(labels)}"
        if reason is not None:
            if not skip_malformed:
                raise TsvError(f"{path}:{number}: {reason} (pass the skip flag to skip and count such rows)")
            skipped.append((number, reason))
            continue
        examples.append(Example(
            text_a=fields[column["text_a"]],
            text_b=fields[column["text_b"]] if pair else None,
            label=fields[column["label"]] if labelled and "label" in column else None,
        ))
    if not examples:
        raise TsvError(f"{path}: no usable rows ({len(skipped)} skipped)")
    if labelled:
        found = sort_labels({e.label for e in examples})
        label_set = found if labels is None else tuple(labels)
        if len(label_set) < 2 and labels is None:
            raise TsvError(f"{path}: a classifier needs at least 2 labels, found {list(found)}")
    else:
        label_set = tuple(labels or ())
    return TsvData(str(path), examples, label_set, pair, skipped)


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
