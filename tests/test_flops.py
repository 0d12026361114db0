"""FLOPs of both kinds of exit from one mechanism (``uer.exit.flops``): every shipped model builds
with a fastbert and a token_exit target and gets a count (a transformer) or None (anything else),
configs without ``emb_size`` included; on real runs the counts equal ``FlopCounterMode``'s."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from uer.config import load_config
from uer.fastbert.flops import FlopModel
from uer.model_builder import build_model
from uer.tagging.flops import TaggerFlops
from uer.tagging.inference import TokenExit

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "models").rglob("*.yaml"))
TARGETS = {"fastbert": {"name": "fastbert"}, "token_exit": {"name": "token_exit"}}
VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(60)]


def meta_model(path: str, target: str):
    """The model on the meta device: shapes only, so BERT-large builds in a blink."""
    config = load_config(ROOT / path).with_target(TARGETS[target])
    with torch.device("meta"):
        return config, build_model(config, vocab_size=len(VOCAB_TOKENS), labels_num=5, vocab_tokens=VOCAB_TOKENS)


def test_the_zoo_has_configs_of_every_kind():
    kinds = {load_config(ROOT / p).encoder.name for p in CONFIGS}
    assert {"transformer", "lstm"} <= kinds
    assert any(load_config(ROOT / p).embedding.emb_size is None for p in CONFIGS)  # the case of review 5.4
    assert any(load_config(ROOT / p).embedding.emb_size is not None for p in CONFIGS)  # ALBERT's factorised one


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", CONFIGS)
def test_every_model_kind_counts_or_says_none(path, target):
    config, model = meta_model(path, target)
    counter = {"fastbert": FlopModel, "token_exit": TaggerFlops}[target].of(model)
    if config.encoder.name != "transformer" or config.subencoder is not None:
        assert counter is None  # callers show "-"
        return
    n, layers = 20, config.encoder.cfg.layers_num
    full = float(counter.full(n))
    assert full > 0
    if target == "fastbert":
        first = float(counter.early_exit(n, 1))
        assert 0 < first < full and float(counter.early_exit(n, layers)) > full  # every student branch costs more
    else:
        first = counter.early_exit(torch.ones(n, dtype=torch.long))
        everyone = counter.early_exit(torch.full((n,), layers, dtype=torch.long))
        assert 0 < first < full < everyone  # students' branches on top of the full model
    emb, hidden = config.emb_size, config.encoder.cfg.hidden_size
    projection = float(counter.embedding(n))
    assert projection == (0.0 if emb == hidden else 2.0 * n * emb * hidden)


def tiny_token_exit(path: str):
    torch.manual_seed(0)
    config = load_config(ROOT / path).with_target({"name": "token_exit", "branch_size": 16})
    model = build_model(config, vocab_size=len(VOCAB_TOKENS), labels_num=5, vocab_tokens=VOCAB_TOKENS).eval()
    target = model.target.components["token_exit"]
    with torch.no_grad():  # layer 1's branch sure about some tokens only: mixed exits
        b = target.branches[0]
        b.dense.weight.zero_(); b.dense.weight[0, 0] = 1.0; b.dense.bias.zero_()
        b.output.weight.zero_(); b.output.weight[0, 0] = 40.0; b.output.bias.zero_()
    return config, model.requires_grad_(False)


@pytest.mark.parametrize("path", ["models/bert/tiny.yaml", "models/bert/tiny_alibi.yaml"])
def test_token_exit_counts_equal_flop_counter_without_emb_size(path):
    """models/bert/tiny.yaml writes no emb_size: the count that crashed run_ner after training."""
    config, model = tiny_token_exit(path)
    assert config.embedding.emb_size is None
    runner = TokenExit(model, runtime="eager")  # F.linear: counted (oneDNN's packed linears are not)
    flops = TaggerFlops.of(model)
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(5, len(VOCAB_TOKENS), (1, 11), generator=gen)
    seg = torch.ones_like(src)

    def counted(fn):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # MATH: attention as bmm
            result = fn()
        return counter.get_total_flops(), result

    seen = set()
    for speed in (0.0, 0.5, 1.0):
        total, out = counted(lambda: runner.predict(src, seg, speed=speed))
        expected = flops.full(11) if speed == 0 else flops.early_exit(out.exit_layer[0])
        assert total == expected, speed
        seen.add(tuple(out.exit_layer[0].tolist()))
    assert len(seen) == 3  # the full model, a mixed pattern, everyone after layer 1
