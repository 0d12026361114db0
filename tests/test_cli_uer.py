"""``python -m uer``: what a user sees when listing modules and summarising a config."""
from pathlib import Path

from uer.__main__ import main
from uer.embeddings import EMBEDDINGS
from uer.encoders import ENCODERS
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]


def test_list_prints_every_registered_name(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for registry in (EMBEDDINGS, ENCODERS, SUBENCODERS, TARGETS):
        assert f"{registry.kind}s:" in out
        for name in registry.names():
            assert f"  {name} " in out


def test_summary_counts_parameters_and_flops(capsys):
    assert main(["summary", str(ROOT / "models/bert/tiny.yaml"), "--vocab_size", "1000", "--seq_length", "16"]) == 0
    out = capsys.readouterr().out
    # encoder of BERT-tiny: 2 layers x (4*128*128+4*128 attention + 2*128*512+512+128 ffn + 4*128 norms)
    per_layer = 4 * 128 * 128 + 4 * 128 + 2 * 128 * 512 + 512 + 128 + 4 * 128
    assert f"{2 * per_layer:,} parameters" in out
    assert "GFLOPs per sample at 16 tokens" in out


def test_summary_reports_config_errors(capsys):
    assert main(["summary", str(ROOT / "models/bert/tiny.yaml"), "--vocab_size", "10", "encoder.heads=2"]) == 2
    assert "unknown key 'heads'" in capsys.readouterr().err
