"""ALiBi attention biases (``encoder.position_bias: alibi``): the slopes, the scores, and why they exist."""
import math

import numpy as np
import pytest
import torch

from uer.config import config_from_dict
from uer.encoders.transformer import alibi_mask, alibi_slopes
from uer.layers.executor import attend
from uer.model_builder import build_model
from uer.trainer import make_optimizer


def test_slopes_follow_the_papers_rule_from_eight_heads_and_stay_sharp_below():
    assert alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]
    torch.testing.assert_close(alibi_slopes(16), torch.tensor([2.0 ** -(k / 2) for k in range(1, 17)]))
    # 12 heads (BERT-base): the 8-head slopes, then every other one of the 16-head sequence
    twelve = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k / 2) for k in (1, 3, 5, 7)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(twelve))
    # fewer than 8 heads: the first slopes of the 8-head sequence (a sharp local head is kept)
    assert alibi_slopes(2).tolist() == [0.5, 0.25]
    assert alibi_slopes(4).tolist() == [0.5, 0.25, 0.125, 0.0625]


def test_scores_are_minus_slope_times_distance_and_padding_is_never_seen():
    seg = torch.tensor([[1, 1, 2, 2, 0]])
    mask = alibi_mask(seg, "fully_visible", 2)
    assert mask.shape == (1, 2, 5, 5)
    slopes = alibi_slopes(2)
    for h in range(2):
        for i in range(5):
            for j in range(4):
                assert mask[0, h, i, j].item() == pytest.approx(-slopes[h].item() * abs(i - j))
            assert mask[0, h, i, 4].item() == float("-inf")  # the padding key
    causal = alibi_mask(torch.ones(1, 4, dtype=torch.long), "causal", 2)
    future = torch.ones(4, 4, dtype=torch.bool).triu(1)
    assert torch.equal(torch.isinf(causal[0, 0]), future)  # a query never sees a later position


def test_attention_with_alibi_equals_the_formula():
    torch.manual_seed(0)
    heads, size, t = 2, 4, 6
    qkv = torch.randn(2, t, 3 * heads * size)
    seg = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    got = attend(qkv, heads, alibi_mask(seg, "fully_visible", heads))
    q, k, v = qkv.view(2, t, 3, heads, size).permute(2, 0, 3, 1, 4)
    pos = torch.arange(t)
    scores = q @ k.transpose(-1, -2) / math.sqrt(size) - alibi_slopes(heads)[:, None, None] * (pos[None] - pos[:, None]).abs()
    scores = scores.masked_fill((seg == 0)[:, None, None, :], float("-inf"))
    want = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, t, -1)
    torch.testing.assert_close(got, want)
    # bf16: the additive mask follows the query's dtype instead of failing in SDPA
    low = attend(qkv.bfloat16(), heads, alibi_mask(seg, "fully_visible", heads))
    assert low.dtype == torch.bfloat16


def _pair_copy_accuracy(components: list, position_bias: str, steps: int = 300) -> float:
    """Masked-LM on rows "a a b b c c ...": a masked token is its pair's copy, on its left or on its
    right. The accuracy on masked tokens over the last 50 of ``steps`` steps from scratch."""
    torch.manual_seed(0)
    vocab, t, b = 64, 16, 32
    config = config_from_dict({
        "embedding": {"components": components, "dropout": 0.0},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 1, "heads_num": 2, "feedforward_size": 64,
                    "dropout": 0.0, "attention_dropout": 0.0, "position_bias": position_bias},
        "target": {"components": ["mlm"]},
    }, "pair-copy")
    model = build_model(config, vocab_size=vocab)
    opt = make_optimizer(model.named_parameters(), 3e-3, 0.0)
    rng = np.random.default_rng(0)
    accs = []
    for step in range(steps):
        src = np.repeat(rng.integers(5, vocab, size=(b, t // 2)), 2, axis=1)
        masked = rng.random((b, t)) < 0.15
        masked[:, 1::2] &= ~masked[:, 0::2]  # never both of a pair: the answer is always visible
        batch = {"src": torch.tensor(np.where(masked, 3, src)), "seg": torch.ones(b, t, dtype=torch.long),
                 "tgt_mlm": torch.tensor(np.where(masked, src, -100))}
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if step >= steps - 50:
            accs.append(out["mlm_acc"].item())
    return float(np.mean(accs))


POS = {"name": "pos", "max_seq_length": 16}


def test_alibi_trains_and_keeps_direction_through_the_learned_positions():
    """With ``pos`` the model finds its pair on either side; ALiBi alone is symmetric (distance, not
    direction), so it cannot know which neighbour is its pair: why the zoo's ALiBi configs keep ``pos``."""
    with_positions = _pair_copy_accuracy(["word", POS, "seg"], "alibi")
    alone = _pair_copy_accuracy(["word", "seg"], "alibi")
    assert with_positions > 0.8, with_positions
    assert alone < 0.6, alone
