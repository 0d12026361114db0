"""uer.layers.dropout (the CPU mask drawn with uniform_) and the attention maths that uses it in training."""
import pytest
import torch
import torch.nn.functional as F

from uer.layers import executor
from uer.layers.dropout import Dropout, dropout


def test_kept_values_are_scaled_and_the_gradient_follows_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 300, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_same_seed_same_mask_and_eval_or_zero_is_the_identity():
    x = torch.randn(8, 50)
    torch.manual_seed(3)
    a = dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.1))
    layer = Dropout(0.5).eval()
    assert layer(x) is x and dropout(x, 0.0) is x and dropout(x, 0.3, training=False) is x
    assert isinstance(layer, torch.nn.Dropout) and repr(layer) == "Dropout(p=0.5, inplace=False)"


def test_bf16_stays_bf16_and_a_bad_probability_is_named():
    assert dropout(torch.randn(4, 9).bfloat16(), 0.1).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        dropout(torch.randn(3), 1.0)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_attention_with_dropout_is_sdpas_maths(monkeypatch, mask_kind):
    """With the probabilities' dropout made the identity, the training path equals SDPA exactly."""
    monkeypatch.setattr(executor, "dropout", lambda probs, p: probs)
    g = torch.Generator().manual_seed(1)
    b, t, heads, width = 3, 7, 2, 16
    qkv = torch.randn(b, t, 3 * width, generator=g)
    mask = {"none": None,
            "bool": torch.arange(t)[None, None, None, :] < torch.tensor([7, 5, 2])[:, None, None, None],
            "float": torch.randn(b, heads, t, t, generator=g)}[mask_kind]
    ours = executor.attend(qkv, heads, mask, dropout_p=0.1)
    q, k, v = executor.split_heads(qkv, 3, heads)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, t, -1)
    torch.testing.assert_close(ours, ref)
