"""``run_ner.py`` on the early-exit core: the rows of shared/bad-inputs.md round 3 that run_ner got
wrong (each: exit 2, one line naming the culprit, no traceback, pre-existing files untouched), and
the shipped configs (no ``emb_size`` in the YAML) running to their report."""
import hashlib
import json
from pathlib import Path

import pytest

import run_ner
from tests.test_ner import ner_args, tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def refused(capsys, argv: list[str], *needles: str) -> str:
    """``run_ner.main(argv)`` exits 2 with one line on stderr holding every needle, no traceback."""
    assert run_ner.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("run_ner.py: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (window 0, speeds 0 and 0.5) to re-run against."""
    root = tmp_path_factory.mktemp("ner")
    tiny_dataset(root)
    assert run_ner.main(ner_args(root, "--speed", "0,0.5")) == 0
    return root


def test_a_shipped_config_without_emb_size_runs_to_its_report(tmp_path):
    """Rows 1-3: models/bert/tiny.yaml has no emb_size; FLOPs once crashed after training."""
    tiny_dataset(tmp_path)
    argv = ner_args(tmp_path, "--speed", "0,0.5", "--vocab_path", str(ROOT / "models" / "google_zh_vocab.txt"))
    argv[argv.index("--config_path") + 1] = str(ROOT / "models" / "bert" / "tiny.yaml")
    assert run_ner.main(argv) == 0
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    assert report["full_flops_per_sentence"] > 0 and report["rows"][0]["flops_speedup"] == pytest.approx(1.0)


@pytest.mark.parametrize("target", ["model.pt", "model.vocab.txt", "model.stage1.pt", "train.tsv", "label2id.json"])
def test_the_report_never_replaces_a_file_of_the_run_or_an_input(finished, capsys, target):
    """Rows 46-49: the report path is the run's own model, vocabulary, resume state, or an input."""
    before = snapshot(finished)
    path = finished / ("out" if target.startswith("model") else "") / target
    refused(capsys, ner_args(finished, "--speed", "0,0.5", "--report_path", str(path)), "--report_path")
    assert snapshot(finished) == before


def test_a_foreign_json_is_not_replaced_by_the_report(finished, capsys, tmp_path):
    """Rows 50-51: someone's results.json, given or sitting at the default report path."""
    mine = tmp_path / "results.json"
    mine.write_text('{"accuracy": 0.9}\n')
    refused(capsys, ner_args(finished, "--speed", "0,0.5", "--report_path", str(mine)), "is not a run_ner.py report")
    assert mine.read_text() == '{"accuracy": 0.9}\n'


def test_a_file_where_the_predictions_folder_goes_is_refused_before_training(tmp_path, capsys):
    """Row 53: ``model.predictions`` is a file: refused up front, not after training."""
    tiny_dataset(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.predictions").write_text("mine")
    refused(capsys, ner_args(tmp_path), "model.predictions is a file")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.predictions"]


def test_another_window_keeps_its_own_report_and_stale_speeds_go(finished):
    """Rows 56-58: a re-run with another window writes its own report; another speed list removes
    the earlier list's per-speed files instead of leaving them beside the new report."""
    first = (finished / "out" / "model.report.json").read_bytes()
    assert run_ner.main(ner_args(finished, "--speed", "0,0.3", "--window", "1")) == 0
    assert (finished / "out" / "model.report.json").read_bytes() == first
    assert json.loads((finished / "out" / "model.window1.report.json").read_text())["window"] == 1
    assert run_ner.main(ner_args(finished, "--speed", "0,0.3")) == 0
    files = sorted(p.name for p in (finished / "out" / "model.predictions").iterdir())
    assert files == ["full_model.tsv", "speed_0.00.tsv", "speed_0.30.tsv"]


def test_vocabulary_errors_are_one_line(tmp_path, capsys):
    """Rows 31-32: a repeated token, an empty line, no [CLS]."""
    tiny_dataset(tmp_path)
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    for name, lines, needle in (("dup.txt", tokens + [tokens[-1]], "appears twice"),
                                ("empty.txt", tokens[:5] + [""] + tokens[5:], "empty line"),
                                ("nocls.txt", [t for t in tokens if t != "[CLS]"], "[CLS]")):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        refused(capsys, ner_args(tmp_path, "--vocab_path", str(tmp_path / name)), name, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, yaml_extra, needles", [
    (("--seq_length", "1"), "", ("--seq_length", ">= 4")),  # row 34
    (("--seq_length", "1000"), "", ("--seq_length is 1000", "position table", "max_seq_length 32")),  # rows 36-37
    ((), "ner: {seq_length: 1000}\n", ("ner.seq_length is 1000", "max_seq_length 32")),
    ((), "ner: {epochs_num: 0}\n", ("ner.epochs_num: 0 is not >= 1",)),  # row 42
    ((), "ner: {learning_rate: 0}\n", ("ner.learning_rate: 0", "> 0")),  # row 43
    (("--window", "1000000000"), "", ("--window 1000000000",)),  # row 38: refused, not a spin
])
def test_what_would_fail_after_training_is_refused_before_it(tmp_path, capsys, extra, yaml_extra, needles):
    tiny_dataset(tmp_path)
    cfg = tmp_path / "cfg.yaml"  # its position table holds 32 tokens
    cfg.write_text(cfg.read_text() + yaml_extra)
    argv = ner_args(tmp_path, *extra)
    for flag in ("--seq_length", "--epochs_num", "--learning_rate"):  # the YAML's value is what is tried
        if yaml_extra and flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    refused(capsys, argv, *needles)
    assert not (tmp_path / "out").exists()


def test_label_files_and_data_traps(tmp_path, capsys):
    """Rows 13, 15, 26-28: white space as a character, a BOM, a repeated key, boolean ids."""
    tiny_dataset(tmp_path)
    l2i = json.loads((tmp_path / "label2id.json").read_text())
    (tmp_path / "dup.json").write_text('{"O": 0, "B-PER": 1, "B-PER": 1' + "".join(
        f', "{k}": {v}' for k, v in l2i.items() if k not in ("O", "B-PER")) + "}")
    refused(capsys, ner_args(tmp_path, "--label2id_path", str(tmp_path / "dup.json")), "dup.json", "'B-PER' is listed twice")
    (tmp_path / "bool.json").write_text(json.dumps({**l2i, "O": False, "B-PER": True}))
    refused(capsys, ner_args(tmp_path, "--label2id_path", str(tmp_path / "bool.json")), "bool.json", "integer ids")
    rows = (tmp_path / "train.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "ws.tsv").write_text("\n".join(rows[:3] + ["\u3000 \u3000\tO O"] + rows[3:]) + "\n", encoding="utf-8")
    refused(capsys, ner_args(tmp_path, "--train_path", str(tmp_path / "ws.tsv")), "ws.tsv:4", "U+3000")
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "train.tsv").read_bytes())
    assert run_ner.main(ner_args(tmp_path, "--train_path", str(tmp_path / "bom.tsv"), "--speed", "0")) == 0


def test_a_test_set_without_entities_chooses_no_speed(finished, capsys, tmp_path):
    """Row 22: F1 is 0 at every speed; recommending speed 1 would be nonsense."""
    rows = (finished / "test.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "allO.tsv").write_text("\n".join([rows[0]] + [r.split("\t")[0] + "\t" + " ".join(
        "O" for _ in r.split("\t")[0].split()) for r in rows[1:]]) + "\n", encoding="utf-8")
    report = tmp_path / "r.json"
    argv = ner_args(finished, "--speed", "0,0.5", "--test_path", str(tmp_path / "allO.tsv"), "--report_path", str(report))
    assert run_ner.main(argv) == 0
    assert json.loads(report.read_text())["chosen"] is None
    assert "has no entities" in capsys.readouterr().err


@pytest.mark.parametrize("encoder", ["lstm", "char_cnn"])
def test_other_backbones_run_to_their_report(tmp_path, encoder):
    """Row 5: an LSTM (no FLOPs formula: None, printed '-') crashed formatting the chosen speed;
    row 6: a character-CNN subencoder needed the vocabulary's tokens to build."""
    tiny_dataset(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    if encoder == "lstm":
        cfg.write_text("embedding: {emb_size: 16, components: [word], layernorm: none}\n"
                       "encoder: {name: lstm, hidden_size: 16, layers_num: 2}\ntarget: {components: [lm]}\ntokenizer: {name: char}\n")
    else:
        cfg.write_text(cfg.read_text() + "subencoder: {name: cnn, max_chars: 4, char_emb_size: 8, kernel_size: 3}\n")
    assert run_ner.main(ner_args(tmp_path, "--speed", "0,1")) == 0
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    assert [r["speed"] for r in report["rows"]] == [0.0, 1.0] and report["teacher_f1"] >= 0
    if encoder == "lstm":
        assert report["rows"][0]["flops_speedup"] is None
