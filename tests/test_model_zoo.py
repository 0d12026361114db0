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
