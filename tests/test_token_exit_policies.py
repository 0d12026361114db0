"""Token exit under every exit policy (``uer.exit.policies``, the rules sentence exit uses), the
neighbourhood window as a wrapper of any policy, and the window capped at the row."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import uer.tagging.inference as inference
from tests.test_ner import batch_of, tiny_model
from uer.exit.policies import POLICIES, normalized_entropy, policy_names, resolve
from uer.tagging.inference import TokenExit, windowed

POLICY_SPECS = [*policy_names("classification"), {"name": "topk_entropy", "k": 3}]


@pytest.fixture(scope="module")
def runner():
    return TokenExit(tiny_model(), runtime="eager")


def test_every_classification_policy_is_swept_and_the_others_refused(runner):
    assert set(policy_names()) == set(POLICIES.names())
    assert set(policy_names("classification")) >= {"entropy", "confidence", "topk_entropy", "patience"}
    others = set(POLICIES.names()) - set(policy_names("classification"))
    src, seg = batch_of([5])
    for name in others:  # a sigmoid or a regression value is not a tag distribution
        with pytest.raises(ValueError, match="tag distribution"):
            runner.predict(src, seg, speed=0.5, policy=name)


@pytest.mark.parametrize("policy", POLICY_SPECS, ids=str)
@pytest.mark.parametrize("window", [0, 1])
def test_every_policy_per_token_is_independent_of_the_batch(runner, policy, window):
    lengths = [9, 5, 7, 12]
    src, seg = batch_of(lengths)
    batched = runner.predict(src, seg, speed=0.5, window=window, policy=policy)
    for i, n in enumerate(lengths):
        alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed=0.5, window=window, policy=policy)
        assert torch.equal(alone.exit_layer[0], batched.exit_layer[i, :n]), (policy, i)
        torch.testing.assert_close(alone.probs[0], batched.probs[i, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", POLICY_SPECS, ids=str)
def test_speed_zero_is_the_full_model_and_speed_one_exits_at_layer_one(runner, policy):
    src, seg = batch_of([9, 5, 7])
    full = runner.full_model(src, seg)
    zero = runner.predict(src, seg, speed=0.0, policy=policy)
    assert torch.equal(zero.probs, full) and torch.equal(zero.exit_layer, torch.where(seg > 0, 3, 0))
    one = runner.predict(src, seg, speed=1.0, policy=policy)
    assert torch.equal(one.exit_layer, torch.where(seg > 0, 1, 0))


def test_a_policy_by_name_spec_or_object_gives_the_same_exits(runner):
    src, seg = batch_of([12, 8])
    by_name = runner.predict(src, seg, speed=0.5, policy="topk_entropy")
    for same in ({"name": "topk_entropy"}, resolve("topk_entropy")):
        assert torch.equal(runner.predict(src, seg, speed=0.5, policy=same).exit_layer, by_name.exit_layer)
    with pytest.raises(ValueError, match="confidence"):  # an unknown name lists the valid ones
        runner.predict(src, seg, speed=0.5, policy="gut_feeling")


def test_entropy_exits_where_the_first_branch_is_sure():
    """Layer 1 decides on layer 1's own distribution (nothing has exited before it)."""
    model = tiny_model()
    runner = TokenExit(model, runtime="eager")
    src, seg = batch_of([10])
    out = runner.predict(src, seg, speed=0.5, policy="entropy")
    target = model.target.components["token_exit"]
    with torch.no_grad():
        h1 = model.encoder.layer(0, model.embed(src, seg), model.encoder.context(seg))
        sure = normalized_entropy(torch.softmax(target.branches[0](h1), -1))[0] < 0.5
    assert torch.equal(out.exit_layer[0] == 1, sure) and 0 < int(sure.sum()) < 10


def test_patience_counts_agreeing_layers_per_token():
    """3 layers, speed 0.5: patience 1, so a token leaves at layer 2 when its tag there is the one of
    layer 1 (no token leaves at layer 1, so layer 2 is the full model's), else at layer 3."""
    model = tiny_model(layers=3)
    runner = TokenExit(model, runtime="eager")
    src, seg = batch_of([12])
    out = runner.predict(src, seg, speed=0.5, policy="patience")
    target = model.target.components["token_exit"]
    with torch.no_grad():
        h1 = model.encoder.layer(0, model.embed(src, seg), model.encoder.context(seg))
        h2 = model.encoder.layer(1, h1, model.encoder.context(seg))
        agree = target.branches[0](h1)[0].argmax(-1) == target.branches[1](h2)[0].argmax(-1)
    assert torch.equal(out.exit_layer[0], torch.where(agree, 2, 3))


def test_windowed_is_all_of_the_neighbours():
    ready = torch.tensor([True, True, False, True, True, True, True])
    seg = torch.ones(1, 7, dtype=torch.long)
    assert windowed(ready, seg, 0).tolist() == ready.tolist()
    assert windowed(ready, seg, 1).tolist() == [True, False, False, False, True, True, True]
    assert windowed(ready, seg, 3).tolist() == [False] * 6 + [True]
    # two rows with padding: a row's neighbours never come from the other row, padding counts as ready
    seg = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    positions = (seg > 0).reshape(-1).nonzero().squeeze(1)
    ready = torch.tensor([True, True, True, False, True, True, True])
    assert windowed(ready, seg, 1, positions).tolist() == [True, True, True, False, False, True, True]


def test_a_huge_window_is_the_whole_row_and_costs_no_more(monkeypatch):
    """Issue 22 row 38: window 10**9 means the same as the row's length, and pools over no more."""
    runner = TokenExit(tiny_model(), runtime="eager")
    src, seg = batch_of([12, 8])
    kernels, pool = [], F.max_pool1d

    def recording(x, kernel_size, *args, **kwargs):
        kernels.append(kernel_size)
        return pool(x, kernel_size, *args, **kwargs)

    monkeypatch.setattr(inference.F, "max_pool1d", recording)
    huge = runner.predict(src, seg, speed=0.5, window=10**9)
    row = runner.predict(src, seg, speed=0.5, window=12)
    assert torch.equal(huge.exit_layer, row.exit_layer)
    assert kernels and max(kernels) <= 2 * 12 + 1
    wide = runner.predict(src, seg, speed=0.5, window=1)
    assert bool((huge.exit_layer >= wide.exit_layer).all())  # a wider window never exits earlier
