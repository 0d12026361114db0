"""``python -m uer``: what a user sees when listing modules and summarising a config."""
from pathlib import Path

from uer.__main__ import main
from uer.data.processors import PROCESSORS
from uer.embeddings import EMBEDDINGS
from uer.encoders import ENCODERS
from uer.exit.policies import POLICIES
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS
from uer.tokenizers import TOKENIZERS

ROOT = Path(__file__).resolve().parents[1]


def test_list_prints_every_registry_under_its_own_heading(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    headings = [line for line in out.splitlines() if not line.startswith(" ")]
    assert headings == ["embeddings:", "encoders:", "subencoders:", "targets:", "tokenizers:", "processors:", "exit policies:"]
    for heading, registry in zip(headings, (EMBEDDINGS, ENCODERS, SUBENCODERS, TARGETS, TOKENIZERS, PROCESSORS, POLICIES)):
        block = out.split(heading + "\n", 1)[1].split("\n", len(registry.names()))[: len(registry.names())]
        assert [line.split()[0] for line in block] == registry.names(), heading
        for line in block:  # a one-line description: the class docstring's first line
            assert len(line.split(None, 1)) == 2, line


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
