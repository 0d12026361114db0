"""The dataset builder: deterministic, deduplicated splits with no text in two of them."""
import json
import sys
from pathlib import Path

import pytest

from uer.data.tsv import read_tsv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_sentiment_datasets as builder  # noqa: E402


def check_splits(folder: Path, labels: tuple[str, ...]) -> dict[str, int]:
    seen: dict[str, str] = {}
    sizes = {}
    for split in ("train", "dev", "test"):
        data = read_tsv(folder / f"{split}.tsv", labels=labels)
        sizes[split] = len(data.examples)
        for e in data.examples:
            key = e.text_a.casefold()
            assert key not in seen, f"{e.text_a!r} is in {seen.get(key)} and {split}"
            seen[key] = split
            assert e.text_a == " ".join(e.text_a.split())
    return sizes


def test_synthetic_rules(tmp_path):
    pairs = [("0", "Bad  day"), ("0", "bad day"), ("1", "fine\tday"), ("1", "both"), ("0", "BOTH"), ("1", "   ")]
    stats = builder.build(pairs, tmp_path, {"0": "neg", "1": "pos"}, "test")
    assert stats["empty"] == 1 and stats["unique_texts"] == 3 and stats["dropped_conflicting_labels"] == 1
    rows = sorted(line for s in ("train", "dev", "test") for line in (tmp_path / f"{s}.tsv").read_text().splitlines()[1:])
    assert rows == ["0\tBad day", "1\tfine day"]  # one copy, whitespace collapsed, the conflicting text gone


@pytest.mark.parametrize("name, labels, dropped", [("reviews_zh", ("0", "1"), 47), ("tweets", ("0", "1", "2"), 49)])
def test_real_datasets(tmp_path, name, labels, dropped):
    build = {"reviews_zh": builder.build_reviews_zh, "tweets": builder.build_tweets}[name]
    stats = build(tmp_path / "a")
    assert stats["dropped_conflicting_labels"] == dropped
    sizes = check_splits(tmp_path / "a", labels)
    total = sum(sizes.values())
    assert total == stats["unique_texts"] - dropped
    assert 0.78 < sizes["train"] / total < 0.82 and 0.08 < sizes["test"] / total < 0.12
    if name == "reviews_zh":  # deterministic: a second build gives the same bytes
        build(tmp_path / "b")
        for split in ("train", "dev", "test"):
            assert (tmp_path / "a" / f"{split}.tsv").read_bytes() == (tmp_path / "b" / f"{split}.tsv").read_bytes()
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["splits"]["train"]["rows"] == sizes["train"]
