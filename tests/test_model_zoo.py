"""Every YAML in models/ (recursively) loads, assembles, and survives save -> strict load."""
from pathlib import Path

import pytest
import torch

from uer import build_model, load_config
from uer.checkpoint import load_model, save_checkpoint
from uer.summary import count_parameters

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "models").rglob("*.yaml"))
VOCAB = [f"tok{i}" for i in range(97)] + ["##ab", "[UNK]"]  # 99 tokens for configs with a subencoder


def test_zoo_is_not_empty():
    assert {"models/bert/base.yaml", "models/bert/tiny.yaml", "models/gpt2/small.yaml", "models/albert/base.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS)
def test_config_assembles_at_full_size(path):
    cfg = load_config(ROOT / path)
    with torch.device("meta"):  # full-size shapes without allocating BERT-large
        model = build_model(cfg, vocab_size=len(VOCAB), labels_num=3, vocab_tokens=VOCAB if cfg.subencoder else None)
    assert count_parameters(model.encoder) > 0
    assert model.encoder.layers_num == cfg.encoder.cfg.layers_num


@pytest.mark.parametrize("path", CONFIGS)
def test_save_strict_load_identical_outputs(path, tmp_path):
    # same architecture, scaled down so the whole zoo runs in seconds
    cfg = load_config(ROOT / path, ["encoder.layers_num=2"])
    torch.manual_seed(0)
    sizes = {"vocab_size": len(VOCAB), "labels_num": 3}
    if cfg.subencoder:
        sizes["vocab_tokens"] = VOCAB
    model = build_model(cfg, **sizes).eval()
    save_checkpoint(tmp_path / "m.pt", model, cfg, **sizes)
    loaded, _ = load_model(tmp_path / "m.pt")
    loaded.eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, len(VOCAB), (2, 9), generator=g)
    seg = torch.tensor([[1] * 9, [1] * 5 + [2] * 2 + [0] * 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(src, seg), model.encode(src, seg), rtol=0, atol=0)


def bert_backbone_parameters(layers: int, hidden: int, ffn: int, vocab: int = 30522, positions: int = 512, segments: int = 3) -> int:
    """Embedding + encoder of a BERT, counted from the architecture (UER's segment table has a padding row)."""
    embedding = (vocab + positions + segments) * hidden + 2 * hidden  # three tables + LayerNorm
    attention = 4 * (hidden * hidden + hidden)  # q, k, v, output
    feed_forward = hidden * ffn + ffn + ffn * hidden + hidden
    return embedding + layers * (attention + feed_forward + 2 * 2 * hidden)  # two LayerNorms per layer


@pytest.mark.parametrize("path,layers,hidden,ffn,published", [
    ("models/bert/base.yaml", 12, 768, 3072, 110e6),
    ("models/bert/large.yaml", 24, 1024, 4096, 340e6),
])
def test_bert_parameter_counts_match_the_published_ones(path, layers, hidden, ffn, published):
    cfg = load_config(ROOT / path)
    with torch.device("meta"):
        model = build_model(cfg, vocab_size=30522)
    backbone = count_parameters(model.embedding) + count_parameters(model.encoder)
    assert backbone == bert_backbone_parameters(layers, hidden, ffn)
    assert abs(backbone - published) / published < 0.02  # the papers round: 110M, 340M
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                        intermediate_size=ffn, vocab_size=30522)
    with torch.device("meta"):
        hf = transformers.BertModel(hf_config, add_pooling_layer=False)
    # The same architecture: HF's token-type table has 2 rows, UER's segment table 3 (0 = padding).
    assert backbone == sum(p.numel() for p in hf.parameters()) + hidden
