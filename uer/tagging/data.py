"""UER's NER TSV (``text_a<TAB>label``: characters and BIO tags, each separated by spaces) -> ids.

    label2id = read_label2id("data/ner_pd98/label2id.json")
    train = read_ner_tsv("data/ner_pd98/train.tsv", label2id)          # a bad row -> NerDataError file:line
    chunks = encode_sentences(vocab, train.chars, train.tag_ids, seq_length=64)

A row is bad when its tag count differs from its character count, a tag is not in ``label2id``,
a column is missing, or the text is empty. Bad rows are an error naming ``file:line``, or with
``skip_malformed`` are skipped and listed in ``skipped`` (the caller reports the count).

Every character is one token: ``[CLS] c_1 ... c_n`` (segment 1), no ``[SEP]``. A sentence longer
than ``seq_length - 1`` characters is cut into consecutive chunks, each a row of its own; the
predictions of the chunks are put back together, so every character gets a tag.
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from uer.config import MIN_SEQ_LENGTH
from uer.data.loader import pad_batch

IGNORE = -100  # the label of [CLS] and padding: no loss, no prediction


class NerDataError(ValueError):
    """A malformed NER TSV row or label file; the message starts with ``file:line``."""


def read_label2id(path: str | Path) -> dict[str, int]:
    """``{"O": 0, "B-PER": 1, ...}``: ids 0..n-1, each once; every I-X has its B-X."""
    path = Path(path)

    def no_repeats(pairs: list[tuple[str, object]]) -> dict:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:  # json.loads would keep the last one without a word
                raise NerDataError(f"{path}: tag {key!r} is listed twice")
            seen.add(key)
        return dict(pairs)

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=no_repeats)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NerDataError(f"{path}: not a readable JSON label file ({exc})") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in data.items()):
        raise NerDataError(f"{path}: expected a JSON object mapping tags to integer ids, e.g. {{\"O\": 0, \"B-PER\": 1}}")
    if sorted(data.values()) != list(range(len(data))):
        raise NerDataError(f"{path}: tag ids must be 0..{len(data) - 1}, each once; got {sorted(data.values())}")
    for tag in data:
        if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
            raise NerDataError(f"{path}: tag {tag!r} is not O, B-TYPE or I-TYPE")
    if "O" not in data:
        raise NerDataError(f"{path}: the tag set has no 'O'")
    return dict(data)


@dataclass
class NerData:
    path: str
    chars: list[list[str]]
    tags: list[list[str]] | None  # None for unlabelled text
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def tag_ids(self, label2id: dict[str, int]) -> list[list[int]] | None:
        return None if self.tags is None else [[label2id[t] for t in row] for row in self.tags]


def read_ner_tsv(path: str | Path, label2id: dict[str, int] | None, skip_malformed: bool = False) -> NerData:
    """Read a ``text_a<TAB>label`` file (``label2id=None``: only ``text_a`` is read, a label column is ignored)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed, as in every TSV reader of ours
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        raise NerDataError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {start})") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise NerDataError(f"{path}:1: empty file; expected a header 'text_a\\tlabel'")
    header = lines[0].rstrip("\r").split("\t")
    if "text_a" not in header or (label2id is not None and "label" not in header):
        want = "text_a\\tlabel" if label2id is not None else "text_a"
        raise NerDataError(f"{path}:1: header {lines[0]!r}: expected columns {want}")
    text_col = header.index("text_a")
    label_col = header.index("label") if label2id is not None else None
    chars_out: list[list[str]] = []
    tags_out: list[list[str]] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            problem = "empty line"
        else:
            problem = None
            cols = line.split("\t")
            if len(cols) != len(header):
                problem = f"{len(cols)} columns, the header has {len(header)}"
            else:
                chars = [c for c in cols[text_col].split(" ") if c != ""]
                if not chars:
                    problem = "empty text_a"
                elif any(len(c) != 1 for c in chars):
                    bad = next(c for c in chars if len(c) != 1)
                    problem = f"text_a must be single characters separated by spaces; got {bad!r}"
                elif any(c.isspace() for c in chars):  # NerTagger.predict skips white space: it is no token
                    bad = next(c for c in chars if c.isspace())
                    problem = f"text_a holds the white-space character U+{ord(bad):04X}, which is not a token; remove it"
                elif label_col is not None:
                    tags = [t for t in cols[label_col].split(" ") if t != ""]
                    unknown = [t for t in tags if t not in label2id]
                    if len(tags) != len(chars):
                        problem = f"{len(tags)} tags for {len(chars)} characters"
                    elif unknown:
                        problem = f"unknown tag {unknown[0]!r}; valid tags: {', '.join(label2id)}"
        if problem is not None:
            if not skip_malformed:
                raise NerDataError(f"{path}:{number}: {problem} (or pass --skip_malformed to skip such rows)")
            skipped.append((number, problem))
            continue
        chars_out.append(chars)
        if label_col is not None:
            tags_out.append(tags)
    if not chars_out:
        raise NerDataError(f"{path}: no usable rows" + (f" ({len(skipped)} malformed rows skipped)" if skipped else ""))
    return NerData(str(path), chars_out, tags_out if label_col is not None else None, skipped)


def char_id(vocab, ch: str) -> int:
    """The character's id: itself, lower-cased, or NFKC-normalised (full-width ``１`` -> ``1``), else [UNK]."""
    for form in (ch, ch.lower(), unicodedata.normalize("NFKC", ch)):
        i = vocab.index.get(form)
        if i is not None:
            return i
    return vocab.unk_id


@dataclass
class Chunks:
    """Model rows: ``[CLS]`` + up to ``seq_length - 1`` characters of one sentence."""

    ids: list[list[int]]
    segs: list[list[int]]
    tags: list[list[int]] | None  # IGNORE at [CLS]
    sentence: list[int]  # the sentence each row comes from
    offset: list[int]  # the position of the row's first character in its sentence
    sentences_num: int

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(r) for r in self.ids]

    def subset(self, rows: Sequence[int]) -> "Chunks":
        rows = list(rows)
        return Chunks([self.ids[i] for i in rows], [self.segs[i] for i in rows],
                      None if self.tags is None else [self.tags[i] for i in rows],
                      [self.sentence[i] for i in rows], [self.offset[i] for i in rows], self.sentences_num)


def encode_sentences(vocab, chars: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None, seq_length: int) -> Chunks:
    if seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"seq_length {seq_length} is too short: rows are [CLS] + characters, at least {MIN_SEQ_LENGTH} tokens")
    room = seq_length - 1
    ids, segs, tag_rows, sentence, offset = [], [], [], [], []
    for s, row in enumerate(chars):
        row_ids = [char_id(vocab, c) for c in row]
        for start in range(0, len(row_ids), room):
            piece = row_ids[start:start + room]
            ids.append([vocab.cls_id, *piece])
            segs.append([1] * (len(piece) + 1))
            if tags is not None:
                tag_rows.append([IGNORE, *tags[s][start:start + room]])
            sentence.append(s)
            offset.append(start)
    return Chunks(ids, segs, tag_rows if tags is not None else None, sentence, offset, len(chars))


def collate(chunks: Chunks, index: Sequence[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Rows ``index`` -> ``{"src", "seg"[, "tgt_tag"]}`` padded to the longest row."""
    index = [int(i) for i in index]
    batch = {"src": pad_batch([chunks.ids[i] for i in index], pad_id), "seg": pad_batch([chunks.segs[i] for i in index], 0)}
    if chunks.tags is not None:
        batch["tgt_tag"] = pad_batch([chunks.tags[i] for i in index], IGNORE)
    return batch if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in batch.items()}


def assemble(chunks: Chunks, row_values: Sequence[Sequence]) -> list[list]:
    """Per-row values (one per character, [CLS] excluded) -> per-sentence lists, chunks joined in order."""
    out: list[list] = [[] for _ in range(chunks.sentences_num)]
    order = sorted(range(len(chunks)), key=lambda i: (chunks.sentence[i], chunks.offset[i]))
    for i in order:
        out[chunks.sentence[i]].extend(row_values[i])
    return out
