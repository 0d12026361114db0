"""Bad configs and flags given to ``python -m uer summary`` (bad-inputs rows 196-211, 62-67):
exit 2 and one clean line naming what and where, never a traceback."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from uer.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "models/bert/tiny.yaml")


def write(tmp_path, text: str, name="model.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def refused(capsys, *argv) -> str:
    assert main(["summary", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("python -m uer: error: "), err
    return err


def test_the_bare_name_form_from_the_readme_works(tmp_path, capsys):
    path = write(tmp_path, "embedding: word\nencoder: transformer\ntarget: mlm\n")
    assert main(["summary", path, "--vocab_size", "50", "--seq_length", "8",
                 "encoder.layers_num=1", "encoder.hidden_size=32", "encoder.heads_num=2", "encoder.feedforward_size=40"]) == 0
    out = capsys.readouterr().out
    assert "MlmTarget" in out and "WordEmbedding" in out and "GFLOPs per sample at 8 tokens" in out


def test_heads_that_do_not_divide_hidden(capsys):
    err = refused(capsys, TINY, "--vocab_size", "50", "encoder.heads_num=3")
    assert "encoder(transformer): hidden_size 128 is not divisible by heads_num 3" in err


def test_zero_layers_is_refused_with_file_and_line(tmp_path, capsys):
    text = Path(TINY).read_text().replace("layers_num: 2", "layers_num: 0")
    line = text.splitlines().index("  layers_num: 0") + 1
    err = refused(capsys, write(tmp_path, text), "--vocab_size", "50")
    assert f"model.yaml:{line}: encoder(transformer).layers_num: 0 is not >= 1" in err


def test_dropout_out_of_range_names_the_key(tmp_path, capsys):
    err = refused(capsys, TINY, "--vocab_size", "50", "encoder.dropout=5")
    assert "tiny.yaml (override): encoder(transformer).dropout: 5.0 is not in [0, 1)" in err
    text = Path(TINY).read_text().replace("  dropout: 0.1", "  dropout: 1.5")
    line = text.splitlines().index("  dropout: 1.5") + 1
    assert f"model.yaml:{line}: embedding.dropout: 1.5 is not in [0, 1)" in refused(capsys, write(tmp_path, text), "--vocab_size", "50")


def test_bilm_on_a_transformer_is_refused(capsys):
    err = refused(capsys, TINY, "--vocab_size", "50", "target.components=[mlm,nsp,bilm]")
    assert "target 'bilm' needs a bidirectional RNN encoder" in err


def test_binary_and_directory_configs_name_the_file(tmp_path, capsys):
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert f"{binary}: not UTF-8 text" in refused(capsys, str(binary))
    assert f"config file {tmp_path} is a directory" in refused(capsys, str(tmp_path))
    assert "does not exist" in refused(capsys, str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("flag,value,expected", [
    ("--vocab_size", "0", "--vocab_size"), ("--vocab_size", "-5", "--vocab_size"),
    ("--seq_length", "0", "--seq_length"), ("--labels_num", "0", "--labels_num"),
])
def test_non_positive_sizes_are_refused(capsys, flag, value, expected):
    assert main(["summary", TINY, flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert expected in err and "an integer >= 1" in err and "Traceback" not in err


def test_a_sequence_longer_than_the_positions(capsys):
    err = refused(capsys, TINY, "--vocab_size", "50", "--seq_length", "100000")
    assert "--seq_length 100000 is longer than the 512 positions" in err


def test_fastbert_with_one_label(capsys):
    err = refused(capsys, TINY, "--vocab_size", "50", "--labels_num", "1", "target.components=[fastbert]")
    assert "labels_num >= 2" in err


def test_bad_yaml_empty_and_list(tmp_path, capsys):
    assert "missing section 'embedding'" in refused(capsys, write(tmp_path, ""))
    assert "expected a mapping of sections at the top, got list" in refused(capsys, write(tmp_path, "- a\n- b\n"))
    assert "model.yaml:2: not valid YAML" in refused(capsys, write(tmp_path, "embedding: {a: [1\nencoder: x\n"))
    assert "expected section.key=value" in refused(capsys, TINY, "encoder.layers_num")
