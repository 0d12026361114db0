"""UER's NER TSV (``text_a<TAB>label``: characters and BIO tags, each separated by spaces) -> ids.

    label2id = read_label2id("data/ner_pd98/label2id.json")
    train = read_ner_tsv("data/ner_pd98/train.tsv", label2id)          # a bad row -> NerDataError file:line
    chunks = encode_sentences(vocab, train.chars, train.tag_ids(label2id), seq_length=64)

A row is bad when its tag count differs from its character count, a tag is not in ``label2id``,
a column is missing, or the text is empty. Bad rows are an error naming ``file:line``, or with
``skip_malformed`` are skipped and listed in ``skipped`` (the caller reports the count).

Every character is one token: ``[CLS] c_1 ... c_n`` (segment 1), no ``[SEP]``. A sentence longer
than ``seq_length - 1`` characters is cut into consecutive chunks, each a row of its own; the
predictions of the chunks are put back together, so every character gets a tag.

Word-level data (CoNLL form, :func:`read_conll`: one ``word tag`` per line, a blank line between
sentences): each word becomes its sub-tokens (:func:`word_pieces`: WordPiece for a ``bert``
tokenizer, the word's characters for ``char``), the FIRST sub-token of a word carries its tag and
the others :data:`IGNORE`, and a word's prediction is its first sub-token's (``Chunks.heads``). A
row holds whole words (a word longer than a row is cut to its first ``seq_length - 1`` pieces).

    fmt = data_format("train.conll", None)                            # "conll" (by extension) or "tsv"
    train = read_ner(path, label2id, fmt)
    pieces = word_pieces(vocab, config.tokenizer.name, config.tokenizer)
    chunks = encode_sentences(vocab, train.chars, train.tag_ids(label2id), 64, pieces)
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from uer.config import MIN_SEQ_LENGTH
from uer.data.loader import pad_batch

IGNORE = -100  # the label of [CLS], padding and a word's later sub-tokens: no loss, no prediction
FORMATS = ("tsv", "conll")
EXTENSIONS = {".tsv": "tsv", ".conll": "conll", ".txt": "conll", ".bio": "conll", ".iob": "conll"}
WORD_TOKENIZERS = ("bert", "char", "space")  # how a word becomes sub-tokens (word_pieces)


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
    chars: list[list[str]]  # the units per sentence: characters (TSV) or words (CoNLL)
    tags: list[list[str]] | None  # None for unlabelled text
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    data_format: str = "tsv"

    def tag_ids(self, label2id: dict[str, int]) -> list[list[int]] | None:
        return None if self.tags is None else [[label2id[t] for t in row] for row in self.tags]


def read_ner_tsv(path: str | Path, label2id: dict[str, int] | None, skip_malformed: bool = False) -> NerData:
    """Read a ``text_a<TAB>label`` file (``label2id=None``: only ``text_a`` is read, a label column is ignored)."""
    path = Path(path)
    lines = _lines(path)
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise NerDataError(f"{path}:1: empty file; expected a header 'text_a\\tlabel'")
    header = lines[0].split("\t")
    if "text_a" not in header or (label2id is not None and "label" not in header):
        want = "text_a\\tlabel" if label2id is not None else "text_a"
        raise NerDataError(f"{path}:1: header {lines[0]!r}: expected columns {want}")
    text_col = header.index("text_a")
    label_col = header.index("label") if label2id is not None else None
    chars_out: list[list[str]] = []
    tags_out: list[list[str]] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(lines[1:], start=2):
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


def data_format(path: str | Path, given: str | None) -> str:
    """``given`` (``tsv`` or ``conll``), else the format the extension names (``.tsv``; ``.conll``,
    ``.txt``, ``.bio``, ``.iob``). A file that starts with UER's TSV header (``text_a<TAB>...``) is
    TSV whatever its extension (UER's own data often ends in ``.txt``); any other extension is an
    error asking for ``--data_format``."""
    if given is not None:
        if given not in FORMATS:
            raise NerDataError(f"--data_format {given!r}: expected one of {', '.join(FORMATS)}")
        return given
    if _tsv_header(Path(path)):
        return "tsv"
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise NerDataError(f"{path}: cannot tell its format from the extension {Path(path).suffix or '(none)'!r} "
                           f"(.tsv: UER's TSV; .conll/.txt/.bio/.iob: CoNLL form); pass --data_format tsv or conll")
    return fmt


def _tsv_header(path: Path) -> bool:
    """Does the file start with a header naming ``text_a`` (unreadable: no; the reader then says why)?"""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 16)
    except OSError:
        return False
    return "text_a" in first.decode("utf-8-sig", errors="replace").rstrip("\r\n").split("\t")


def read_ner(path: str | Path, label2id: dict[str, int] | None, data_format: str, skip_malformed: bool = False) -> NerData:
    """:func:`read_ner_tsv` or :func:`read_conll`."""
    if data_format == "conll":
        return read_conll(path, label2id, skip_malformed)
    if data_format == "tsv":
        return read_ner_tsv(path, label2id, skip_malformed)
    raise NerDataError(f"data_format {data_format!r}: expected one of {', '.join(FORMATS)}")


def _lines(path: Path) -> list[str]:
    """The file's lines (any line ending); a UTF-8 byte-order mark is allowed, as in every TSV reader of ours."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        raise NerDataError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_conll(path: str | Path, label2id: dict[str, int] | None, skip_malformed: bool = False) -> NerData:
    """CoNLL form: one token per line, the word first and its tag last (``word tag``, or CoNLL-2003's
    ``word POS chunk tag``), separated by spaces or tabs; a blank line ends a sentence; ``-DOCSTART-``
    lines are skipped. ``label2id=None``: the words alone (a line may then hold just the word).
    A bad line is an error naming ``file:line``; with ``skip_malformed`` its sentence is skipped."""
    path = Path(path)
    words_out: list[list[str]] = []
    tags_out: list[list[str]] = []
    skipped: list[tuple[int, str]] = []
    words: list[str] = []
    tags: list[str] = []
    problem: tuple[int, str] | None = None  # the first bad line of the current sentence

    def end() -> None:
        nonlocal words, tags, problem
        if problem is not None:
            skipped.append(problem)
        elif words:
            words_out.append(words)
            tags_out.append(tags)
        words, tags, problem = [], [], None

    for number, line in enumerate(_lines(path), start=1):
        cols = line.split()
        if not cols:
            end()
            continue
        if cols[0] == "-DOCSTART-":
            end()
            continue
        why = None
        if label2id is not None:
            if len(cols) < 2:
                why = f"{line.strip()!r} is not 'word tag' (a word, white space, its tag)"
            elif cols[-1] not in label2id:
                why = f"unknown tag {cols[-1]!r}; valid tags: {', '.join(label2id)}"
        if why is not None:
            if not skip_malformed:
                raise NerDataError(f"{path}:{number}: {why} (or pass --skip_malformed to skip such sentences)")
            problem = problem or (number, why)
            continue
        words.append(cols[0])
        if label2id is not None:
            tags.append(cols[-1])
    end()
    if not words_out:
        raise NerDataError(f"{path}: no usable sentences" + (f" ({len(skipped)} malformed sentences skipped)" if skipped else ""))
    return NerData(str(path), words_out, tags_out if label2id is not None else None, skipped, "conll")


def word_pieces(vocab, tokenizer: str, options=None) -> Callable[[str], list[int]]:
    """How a word becomes sub-token ids: ``bert`` WordPiece (``options``: the config's
    ``BertTokenizerConfig``: lower-casing, accents), ``char`` its characters (as :func:`char_id`),
    ``space`` the word itself. A word with no piece becomes ``[UNK]``."""
    if tokenizer == "bert":
        from uer.tokenizers.bert import BertTokenizer, BertTokenizerConfig

        cfg = options if isinstance(options, BertTokenizerConfig) else BertTokenizerConfig()
        encode = BertTokenizer.from_vocab(vocab, cfg).encode
    elif tokenizer == "char":
        encode = lambda word: [char_id(vocab, c) for c in word if not c.isspace()]  # noqa: E731
    elif tokenizer == "space":
        encode = lambda word: [vocab.index.get(word, vocab.unk_id)]  # noqa: E731
    else:
        raise NerDataError(f"tokenizer {tokenizer!r} cannot split words for word-level tagging; "
                           f"use one of {', '.join(WORD_TOKENIZERS)}")
    return lambda word: encode(word) or [vocab.unk_id]


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
    offset: list[int]  # the position of the row's first unit (character or word) in its sentence
    sentences_num: int
    heads: list[list[int]] | None = None  # per row, the position of each word's first sub-token (None: 1..n)

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(r) for r in self.ids]

    def units(self, r: int) -> list[int] | slice:
        """Where row ``r``'s units (characters, or words' first sub-tokens) are: index a row of per-token values."""
        return slice(1, len(self.ids[r])) if self.heads is None else self.heads[r]

    def subset(self, rows: Sequence[int]) -> "Chunks":
        rows = list(rows)
        return Chunks([self.ids[i] for i in rows], [self.segs[i] for i in rows],
                      None if self.tags is None else [self.tags[i] for i in rows],
                      [self.sentence[i] for i in rows], [self.offset[i] for i in rows], self.sentences_num,
                      None if self.heads is None else [self.heads[i] for i in rows])

    def without_tags(self) -> "Chunks":
        return Chunks(self.ids, self.segs, None, self.sentence, self.offset, self.sentences_num, self.heads)


def encode_sentences(vocab, chars: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None, seq_length: int,
                     pieces: Callable[[str], list[int]] | None = None) -> Chunks:
    """Units per sentence -> rows. ``pieces`` None: every unit is a character, one token (:func:`char_id`);
    else ``pieces(word)`` gives a word's sub-token ids (:func:`word_pieces`), its first one tagged."""
    if seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"seq_length {seq_length} is too short: rows are [CLS] + characters, at least {MIN_SEQ_LENGTH} tokens")
    room = seq_length - 1
    if pieces is not None:
        return _encode_words(vocab, chars, tags, room, pieces)
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


def _encode_words(vocab, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None, room: int,
                  pieces: Callable[[str], list[int]]) -> Chunks:
    ids, segs, tag_rows, sentence, offset, heads = [], [], [], [], [], []
    for s, row in enumerate(words):
        start = 0
        row_ids: list[int] = [vocab.cls_id]
        row_tags: list[int] = [IGNORE]
        row_heads: list[int] = []
        for k, word in enumerate(row):
            got = pieces(word)[:room]  # a word longer than a row: its first pieces (the tag is on the first)
            if len(row_ids) - 1 + len(got) > room:  # the row is full: the word starts the next one
                ids.append(row_ids), segs.append([1] * len(row_ids)), tag_rows.append(row_tags)
                sentence.append(s), offset.append(start), heads.append(row_heads)
                start, row_ids, row_tags, row_heads = k, [vocab.cls_id], [IGNORE], []
            row_heads.append(len(row_ids))
            row_ids += got
            if tags is not None:
                row_tags += [tags[s][k]] + [IGNORE] * (len(got) - 1)
        ids.append(row_ids), segs.append([1] * len(row_ids)), tag_rows.append(row_tags)
        sentence.append(s), offset.append(start), heads.append(row_heads)
    return Chunks(ids, segs, tag_rows if tags is not None else None, sentence, offset, len(words), heads)


def collate(chunks: Chunks, index: Sequence[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Rows ``index`` -> ``{"src", "seg"[, "tgt_tag"]}`` padded to the longest row."""
    index = [int(i) for i in index]
    batch = {"src": pad_batch([chunks.ids[i] for i in index], pad_id), "seg": pad_batch([chunks.segs[i] for i in index], 0)}
    if chunks.tags is not None:
        batch["tgt_tag"] = pad_batch([chunks.tags[i] for i in index], IGNORE)
    return batch if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in batch.items()}


def pick(values: Sequence, where: list[int] | slice) -> list:
    """``values[where]`` for a slice or a list of positions (what :meth:`Chunks.units` gives)."""
    return list(values[where]) if isinstance(where, slice) else [values[i] for i in where]


def assemble(chunks: Chunks, row_values: Sequence[Sequence]) -> list[list]:
    """Per-row values (one per unit: ``row[chunks.units(r)]``) -> per-sentence lists, chunks joined in order."""
    out: list[list] = [[] for _ in range(chunks.sentences_num)]
    order = sorted(range(len(chunks)), key=lambda i: (chunks.sentence[i], chunks.offset[i]))
    for i in order:
        out[chunks.sentence[i]].extend(row_values[i])
    return out
