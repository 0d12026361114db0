"""Reading a corpus as a stream, in byte ranges that parallel workers can own, and checking its layout.

Layouts (corpora/README.md shows them):

- ``documents``: one sentence per line, a blank line between documents (BERT / ALBERT pairs).
- ``lines``: one document per line (MLM, LM). A ``documents`` corpus is accepted too: its blank
  lines then separate the documents and the lines of one document are read one after another.
- ``tsv``: a header ``label<TAB>text_a[<TAB>text_b]``, then one row a line (cls), read by the
  rules of :mod:`uer.data.tsv`.

A corpus is split into ``n`` byte ranges whose edges are moved to the next document boundary, so
every document belongs to exactly one worker, and a worker reads only its range, line by line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

LAYOUTS = ("documents", "lines", "tsv")


class CorpusFormatError(ValueError):
    """The corpus does not have the layout the processor needs; the message says what to do."""


def _is_blank(line: bytes) -> bool:
    return not line.strip()


def boundary(f, x: int, size: int, blank_separated: bool) -> int:
    """The first document start at or after byte ``x`` (``size`` if none).

    Line layouts: the first line start at or after ``x``. Blank-line layouts: the start of the
    line after the first blank line that starts at or after ``x``. Both workers that share an
    edge compute the same value, so the ranges tile the file exactly.
    """
    if x <= 0:
        return 0
    if x >= size:
        return size
    f.seek(x - 1)
    if f.read(1) != b"\n":
        f.readline()  # x is inside a line: move to the next line start
    if not blank_separated:
        return f.tell()
    while True:
        line = f.readline()
        if not line:
            return size
        if _is_blank(line):
            return f.tell()


@dataclass(frozen=True)
class Shard:
    path: str
    start: int
    end: int


def shards(path: str | Path, n: int, blank_separated: bool) -> list[Shard]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        edges = [boundary(f, size * i // n, size, blank_separated) for i in range(n)] + [size]
    return [Shard(str(path), edges[i], edges[i + 1]) for i in range(n)]


def read_lines(shard: Shard, progress=None) -> Iterator[bytes]:
    """The raw lines of a shard (bytes, with their line breaks). ``progress(bytes)`` is called as bytes are consumed."""
    with open(shard.path, "rb") as f:
        f.seek(shard.start)
        pos = reported = shard.start
        while pos < shard.end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            if progress is not None and pos - reported >= 1 << 16:
                progress(pos - reported)
                reported = pos
            yield raw
        if progress is not None:
            progress(pos - reported)


def read_units(shard: Shard, blank_separated: bool, progress=None) -> Iterator[list[str]]:
    """Documents of a shard as lists of stripped lines; with ``blank_separated=False`` every line
    is a unit of its own. ``progress(bytes)`` is called as bytes are consumed."""
    doc: list[str] = []
    pos = shard.start
    for raw in read_lines(shard, progress):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise CorpusFormatError(f"{shard.path}: bytes {pos}..{pos + len(raw)} are not UTF-8 ({exc.reason})") from None
        pos += len(raw)
        if not blank_separated:
            if line:
                yield [line]
            continue
        if line:
            doc.append(line)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


@dataclass(frozen=True)
class Layout:
    blank_separated: bool  # documents are separated by blank lines
    description: str


def inspect(path: str | Path, needs: str, sample_lines: int = 20000) -> Layout:
    """Look at the head of the corpus and fail early, with a clear message, if the processor's
    layout (``needs``: ``documents`` or ``lines``) cannot be right. Returns how the corpus will be read.
    (TSV corpora are checked by their processor, with :mod:`uer.data.tsv`.)"""
    path = Path(path)
    if path.is_dir():
        raise CorpusFormatError(f"corpus {path} is a directory, expected a text file")
    if not path.is_file():
        raise CorpusFormatError(f"corpus {path} does not exist")
    if os.path.getsize(path) == 0:
        raise CorpusFormatError(f"corpus {path} is empty")
    lines: list[str] = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            if i >= sample_lines:
                break
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError:
                raise CorpusFormatError(f"{path}:{i + 1}: not UTF-8 text") from None
        whole = f.read(1) == b""
    head = f"the first {len(lines)} lines" if not whole else f"all {len(lines)} lines"
    blank = [i for i, line in enumerate(lines) if not line.strip()]
    text_lines = len(lines) - len(blank)
    if text_lines == 0:
        raise CorpusFormatError(f"corpus {path}: {head} are blank")
    if needs == "documents":
        if not blank:
            raise CorpusFormatError(
                f"corpus {path}: no blank line in {head}. The sentence-pair processors (bert: mlm+nsp, "
                "albert: mlm+sop) need one sentence per line and a blank line between documents "
                "(corpora/README.md). For one document per line, pre-train with --data_processor mlm."
            )
        # documents in the sample: runs of text lines between blank lines
        runs, run = [], 0
        for line in lines:
            if line.strip():
                run += 1
            elif run:
                runs.append(run)
                run = 0
        if run:
            runs.append(run)
        if runs and max(runs) == 1:
            raise CorpusFormatError(
                f"corpus {path}: every document in {head} is a single line. Sentence pairs need several "
                "sentences per document (one per line). Split documents into sentences "
                "(corpora/build_*.py show how), or use --data_processor mlm."
            )
        return Layout(True, "one sentence per line, documents separated by blank lines")
    if needs == "lines":
        if blank:
            return Layout(True, "documents separated by blank lines; the lines of a document are read in order")
        return Layout(False, "one document per line")
    raise ValueError(f"unknown layout {needs!r}; valid: {', '.join(LAYOUTS)}")
