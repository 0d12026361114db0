"""Bad inputs to the data layer (bad-inputs.md rows 1-41, 108-131): one clean line naming the
culprit, never a traceback, and nothing that existed before is changed or lost."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import preprocess
from uer.config import ConfigError
from uer.data import preprocessing
from uer.data.dataset import DatasetError, DatasetFiles, read_meta
from uer.data.processors import PROCESSORS, ProcessorConfig, SpecialIds, Stats, make_processor, processor_class
from uer.data.processors.base import Processor
from uer.data.text_pair import encode_pair, fit_pair
from uer.data.tsv import TsvError, read_tsv
from uer.registry import Registry, RegistryError
from uer.utils.cli import OutputLock

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "corpora" / "samples"
VOCAB = ROOT / "tests" / "data" / "fastbert_vocab.txt"
CONFIG = ROOT / "models" / "bert" / "tiny.yaml"


def pp(corpus: Path, dataset: Path | str, *extra: str, processor: str = "bert") -> list[str]:
    return ["--corpus_path", str(corpus), "--dataset_path", str(dataset), "--data_processor", processor,
            "--vocab_path", str(VOCAB), "--seq_length", "32", "--no_progress", *extra]


def refused(capsys, argv: list[str], *culprits: str) -> str:
    """main(argv) exits 2 with one line on stderr that names every culprit, and no traceback."""
    rc = preprocess.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("preprocess.py: error:")]
    assert len(lines) == 1, err
    for culprit in culprits:
        assert culprit in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_bytes((SAMPLES / "en_documents.txt").read_bytes())
    return path


# ----------------------------------------------------------------------------- data loss (rows 15-21)
def test_existing_directory_is_not_deleted(tmp_path, corpus, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "thesis.txt").write_text("four years of work")
    (victim / "sub" / "notes.txt").write_text("notes")
    before = snapshot(victim)
    refused(capsys, pp(corpus, victim), str(victim), "not a dataset", "thesis.txt")
    assert snapshot(victim) == before
    assert not Path(f"{victim}.partial").exists()


def test_folder_holding_the_corpus_is_refused(tmp_path, capsys):
    folder = tmp_path / "victim2"
    folder.mkdir()
    my_corpus = folder / "my_corpus.txt"
    my_corpus.write_bytes((SAMPLES / "en_documents.txt").read_bytes())
    before = snapshot(folder)
    refused(capsys, pp(my_corpus, folder), str(folder), "holds the input")
    refused(capsys, pp(my_corpus, tmp_path), str(tmp_path))  # any ancestor of the corpus
    assert snapshot(folder) == before


def test_current_directory_is_refused(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "corpus.txt").write_bytes((SAMPLES / "en_documents.txt").read_bytes())
    (project / "NOTES.md").write_text("mine")
    (project / "src" / "main.py").write_text("print(1)")
    before = snapshot(project)
    monkeypatch.chdir(project)
    refused(capsys, pp(Path("corpus.txt"), "."), "--dataset_path .", "current directory")
    other = tmp_path / "elsewhere.txt"
    other.write_bytes((SAMPLES / "en_documents.txt").read_bytes())
    refused(capsys, pp(other, ".."), "--dataset_path ..", "current directory")  # an ancestor of the cwd
    assert snapshot(project) == before


def test_existing_file_is_refused_before_any_work(tmp_path, corpus, capsys, monkeypatch):
    afile = tmp_path / "afile.txt"
    afile.write_text("keep me")
    monkeypatch.setattr(preprocessing, "_build", lambda *a: pytest.fail("work started"))
    refused(capsys, pp(corpus, afile), str(afile), "is a file")
    assert afile.read_text() == "keep me" and not Path(f"{afile}.partial").exists()
    refused(capsys, pp(corpus, afile / "sub"), str(afile), "is a file")


def test_our_dataset_is_replaced_and_said_so(tmp_path, corpus, capsys):
    out = tmp_path / "ds"
    assert preprocess.main(pp(corpus, out)) == 0
    first = read_meta(out)
    capsys.readouterr()
    assert preprocess.main(pp(corpus, out, "--seed", "3")) == 0
    assert f"replaced the previous dataset at {out}" in capsys.readouterr().err
    assert read_meta(out)["seed"] == 3 and first["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "ds", "ds.lock"]  # no .partial, no .old
    (out / "thesis.txt").write_text("put here by hand")
    refused(capsys, pp(corpus, out), str(out), "thesis.txt")
    assert (out / "thesis.txt").read_text() == "put here by hand" and read_meta(out)["seed"] == 3


def test_stale_partial_of_ours_is_cleaned_a_foreign_one_refused(tmp_path, corpus, capsys):
    out = tmp_path / "ds"
    stale = Path(f"{out}.partial")
    (stale / "shard_000").mkdir(parents=True)
    (stale / "shard_000" / "tokens.bin").write_bytes(b"\0\0")
    (stale / preprocessing.PARTIAL_MARK).write_text("123\n")
    assert preprocess.main(pp(corpus, out)) == 0
    assert not stale.exists() and len(DatasetFiles.open(out)) > 0
    stale.mkdir()
    (stale / "mine.txt").write_text("not from preprocess")
    refused(capsys, pp(corpus, tmp_path / "ds"), f"{stale}", "not left by preprocess.py")
    assert (stale / "mine.txt").read_text() == "not from preprocess"


def test_a_second_run_into_the_same_path_fails_fast(tmp_path, corpus, capsys):
    out = tmp_path / "ds"
    with OutputLock(out, "--dataset_path"):
        refused(capsys, pp(corpus, out), str(out), "another run")
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_ctrl_c_keeps_the_old_dataset_and_leaves_no_partial(tmp_path, corpus, capsys, monkeypatch):
    out = tmp_path / "ds"
    assert preprocess.main(pp(corpus, out)) == 0
    before = snapshot(out)
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(preprocessing, "merge_shards", interrupted)  # after the workers wrote their shards
    rc = preprocess.main(pp(corpus, out, "--seed", "9"))
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert f"preprocess.py: interrupted; the dataset at {out} is unchanged" in err
    assert snapshot(out) == before and not Path(f"{out}.partial").exists()


# ----------------------------------------------------------------------------- inputs (rows 1-41)
def test_directories_given_as_files_are_named(tmp_path, corpus, capsys):
    refused(capsys, pp(tmp_path, tmp_path / "ds"), "--corpus_path", str(tmp_path), "is a directory")
    argv = pp(corpus, tmp_path / "ds")
    argv[argv.index("--vocab_path") + 1] = str(tmp_path)
    refused(capsys, argv, "--vocab_path", "is a directory")


def test_non_utf8_vocabulary_names_the_file(tmp_path, corpus, capsys):
    vocab = tmp_path / "vocab.bin"
    vocab.write_bytes(VOCAB.read_bytes() + b"caf\xe9\n")
    argv = pp(corpus, tmp_path / "ds")
    argv[argv.index("--vocab_path") + 1] = str(vocab)
    refused(capsys, argv, f"{vocab}:41: not UTF-8 text")


def test_seq_length_beyond_the_position_table_is_refused(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setattr(preprocessing, "_build", lambda *a: pytest.fail("work started"))
    argv = ["--config_path", str(CONFIG), "--corpus_path", str(corpus), "--dataset_path", str(tmp_path / "ds"),
            "--vocab_path", str(VOCAB), "--seq_length", "1000", "--no_progress"]
    refused(capsys, argv, "--seq_length 1000", "max_seq_length 512")


@pytest.mark.parametrize("flag, value, expected", [
    ("--span_max_length", "0", "an integer >= 1"),
    ("--processes_num", "0", "an integer >= 1"),
    ("--mask_prob", "1.5", "a number in [0, 1]"),
    ("--short_seq_prob", "-1", "a number in [0, 1]"),
])
def test_bad_sizes_are_refused_by_argparse(tmp_path, corpus, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exit_:
        preprocess.main(pp(corpus, tmp_path / "ds", "--span_masking", flag, value))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: expected {expected}" in err and "Traceback" not in err


def test_more_workers_than_documents_is_noted(tmp_path, corpus, capsys):
    assert preprocess.main(pp(corpus, tmp_path / "ds", "--processes_num", "8")) == 0
    err = capsys.readouterr().err
    assert "note: --processes_num 8 is more than the corpus's 6 documents" in err


def test_broken_meta_json_names_the_file(tmp_path, corpus):
    out = tmp_path / "ds"
    assert preprocess.main(pp(corpus, out)) == 0
    meta = out / "meta.json"
    meta.write_text(meta.read_text()[:-10])
    with pytest.raises(DatasetError, match=rf"{meta}:\d+: not valid JSON"):
        read_meta(out)
    meta.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(DatasetError, match=f"{meta}: not UTF-8 text"):
        read_meta(out)


def test_cls_follows_the_tsv_rules(tmp_path, capsys):
    tsv = tmp_path / "train.tsv"
    tsv.write_bytes(b"label\ttext_a\n pos \ta good movie\nneg\ta bad movie\n\nneg\tcaf\xe9 bad\npos\tgood again\n")
    line = refused(capsys, pp(tsv, tmp_path / "ds", processor="cls"), f"{tsv}:4: blank line", "--skip_malformed")
    assert "Traceback" not in line
    assert preprocess.main(pp(tsv, tmp_path / "ds", "--skip_malformed", processor="cls")) == 0
    err = capsys.readouterr().err
    assert "dropped 1: blank line" in err and "dropped 1: not UTF-8 text" in err and "' pos ' as 'pos'" in err
    files = DatasetFiles.open(tmp_path / "ds")
    assert files.meta["labels"] == ["neg", "pos"] and files.labels.tolist() == [1, 0, 1]


# ----------------------------------------------------------------------------- the TSV reader (rows 108-131)
@pytest.mark.parametrize("name, data, line", [
    ("utf16.tsv", "label\ttext_a\n0\tbad\n1\tgood\n".encode("utf-16"), 1),
    ("latin1.tsv", "label\ttext_a\n0\tbad\n1\tcafé\n".encode("latin-1"), 3),
    ("binary.tsv", b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)) * 4, 1),
], ids=["utf16", "latin1", "binary"])
def test_non_utf8_tsv_names_file_and_line(tmp_path, name, data, line):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TsvError, match=rf"{path}:{line}: not UTF-8 text"):
        read_tsv(path)


def test_skip_malformed_skips_undecodable_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes("label\ttext_a\n0\tbad\n1\tcafé\n1\tgood\n".encode("latin-1"))
    with pytest.raises(TsvError, match="--skip_malformed"):
        read_tsv(path)
    data = read_tsv(path, skip_malformed=True)
    assert [e.text_a for e in data.examples] == ["bad", "good"] and data.skipped == [(3, "not UTF-8 text")]


def test_labels_are_stripped_and_the_strip_reported_once(tmp_path, capsys):
    path = tmp_path / "t.tsv"
    path.write_text("label\ttext_a\n 1 \ta\n0\tb\n1\tc\n2 \td\n2\te\n", encoding="utf-8")
    data = read_tsv(path)
    assert data.labels == ("0", "1", "2") and data.stripped_labels == 2
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == [f"{path}: note: 2 labels had spaces around them and were read without (e.g. ' 1 ' as '1')"]
    read_tsv(tmp_path / "t.tsv", labels=data.labels)  # dev with the same spaces: no unknown label


def test_blank_line_is_called_a_blank_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("label\ttext_a\n0\ta\n\n1\tb\n\n\n", encoding="utf-8")  # trailing blank lines are fine
    with pytest.raises(TsvError, match=rf"{path}:3: blank line \(pass --skip_malformed to skip and count such rows\)"):
        read_tsv(path)
    assert read_tsv(path, skip_malformed=True).skipped == [(3, "blank line")]


def test_directory_as_tsv_is_named(tmp_path):
    with pytest.raises(TsvError, match=f"{tmp_path} is a directory"):
        read_tsv(tmp_path)


# ----------------------------------------------------------------------------- the processor registry
def test_registry_rejects_duplicates_and_lists_valid_names():
    with pytest.raises(RegistryError, match="registered twice"):
        PROCESSORS.register("bert", config=ProcessorConfig)(type("Again", (Processor,), {}))
    with pytest.raises(ConfigError, match="unknown data processor 'nope'; valid data processors: albert, bert, bilm, cls, lm, mlm"):
        processor_class("nope")
    registry = Registry("data processor")
    registry.register("x", config=ProcessorConfig)(Processor)
    assert registry.names() == ["x"]


def test_every_processor_states_its_facts():
    for name in PROCESSORS.names():
        cls = processor_class(name)
        assert cls.layout in ("documents", "lines", "tsv") and cls.targets
        assert cls.label_key is None or cls.label_key.startswith("tgt_")
    targets = [processor_class(n).targets for n in PROCESSORS.names()]
    assert len(set(targets)) == len(targets)  # a target set implies exactly one processor


@pytest.mark.parametrize("name", PROCESSORS.names())
def test_every_registered_processor_round_trips_a_tiny_corpus(tmp_path, name):
    cls = processor_class(name)
    corpus = tmp_path / "corpus"
    if cls.layout == "tsv":
        corpus.write_text("label\ttext_a\n0\ta bad day\n1\ta good day\n0\tbad again\n", encoding="utf-8")
    else:
        corpus.write_bytes((SAMPLES / "en_documents.txt").read_bytes())
    out = tmp_path / "ds"
    assert preprocess.main(pp(corpus, out, processor=name)) == 0
    files = DatasetFiles.open(out)
    assert files.meta["processor"] == name and len(files) > 0
    assert (files.labels is not None) == (cls.label_key is not None)
    row = np.asarray(files.tokens[files.offsets[0]:files.offsets[1]])
    assert row[0] == 2 and row[-1] == 3 and len(row) <= 32  # [CLS] ... [SEP] of fastbert_vocab.txt


def test_processors_build_through_the_registry():
    rng = np.random.default_rng(0)
    made = make_processor("mlm", ProcessorConfig(seq_length=16), SpecialIds(2, 3, 0, 4, 1), rng, Stats())
    assert type(made).__name__ == "MlmProcessor" and made.seq_length == 16
    with pytest.raises(ValueError, match="too short"):
        ProcessorConfig(seq_length=4)


# ----------------------------------------------------------------------------- one pair encoder
def test_fit_pair_is_berts_one_token_at_a_time_rule():
    def loop(a, b, room):
        while a + b > room:
            if a > b:
                a -= 1
            else:
                b -= 1
        return a, b

    for a in range(25):
        for b in range(25):
            for room in range(30):
                assert fit_pair(a, b, room) == loop(a, b, room)


def test_cls_dataset_and_fastbert_encode_a_pair_alike(tmp_path):
    from uer.config import TokenizerConfig
    from uer.data.tsv import read_tsv as read
    from uer.fastbert.data import encode_tsv
    from uer.tokenizers import build_tokenizer

    tsv = tmp_path / "pair.tsv"
    tsv.write_text("label\ttext_a\ttext_b\n1\tthe movie was good and the day was good\tmy movie is okay\n"
                   "0\ta bad day\tthe car is bad today\n", encoding="utf-8")
    out = tmp_path / "ds"
    assert preprocess.main(pp(tsv, out, "--seq_length", "9", processor="cls")) == 0
    files = DatasetFiles.open(out)
    tok = build_tokenizer(TokenizerConfig(name="bert"), vocab_path=VOCAB)
    enc = encode_tsv(tok, read(tsv), seq_length=9)
    for i in range(2):
        assert np.asarray(files.tokens[files.offsets[i]:files.offsets[i + 1]]).tolist() == enc.ids[i]
        assert int(files.seg_a[i]) == enc.segs[i].count(1)
    assert json.loads((out / "meta.json").read_text())["stats"]["truncated_instances"] == 2
    ids, seg_a, cut = encode_pair([5, 6, 7, 8], [9, 10], 7, cls_id=2, sep_id=3)
    assert ids == [2, 5, 6, 3, 9, 10, 3] and seg_a == 4 and cut == 2


def test_tokenizer_flag_drops_the_configs_file_of_the_other_kind(tmp_path, corpus, capsys):
    bad_model = tmp_path / "binary.bin"
    bad_model.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    argv = ["--config_path", str(CONFIG), "--tokenizer", "sentencepiece", "--spm_model_path", str(bad_model),
            "--corpus_path", str(corpus), "--dataset_path", str(tmp_path / "ds"), "--seq_length", "32", "--no_progress"]
    refused(capsys, argv, f"sentencepiece model {bad_model}: not a sentencepiece model")  # not "do not also give vocab_path"
    assert not (tmp_path / "ds").exists()


def test_cls_on_a_documents_corpus_names_the_header(tmp_path, corpus, capsys):
    refused(capsys, pp(corpus, tmp_path / "ds", processor="cls"), f"{corpus}:1: header")
