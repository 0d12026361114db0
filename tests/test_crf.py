"""The linear-chain CRF against brute-force enumeration of every tag path on tiny sizes, and the
``token_exit`` target with ``crf: true`` (stage-1 loss, strict save/load)."""
from __future__ import annotations

import itertools

import pytest
import torch

from uer.tagging.crf import LinearChainCRF, compact


def random_crf(labels: int, seed: int) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(labels)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1.5)
    return crf


def brute_force(crf: LinearChainCRF, emissions: torch.Tensor, n: int) -> tuple[torch.Tensor, list[int], dict]:
    """log Z, the best path and every path's score of one row's first ``n`` positions, by enumeration."""
    scores = {}
    for path in itertools.product(range(crf.labels_num), repeat=n):
        s = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        s = s + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = float(s)
    log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
    return log_z, list(max(scores, key=scores.get)), scores


@pytest.mark.parametrize("labels, lengths", [(3, [4, 1, 3]), (4, [2, 5]), (2, [6, 6, 1])])
def test_partition_viterbi_and_nll_equal_enumeration(labels, lengths):
    crf = random_crf(labels, seed=labels)
    g = torch.Generator().manual_seed(7)
    width = max(lengths)
    emissions = torch.randn(len(lengths), width, labels, generator=g) * 2
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]
    tags = torch.randint(0, labels, (len(lengths), width), generator=g)
    log_z = crf.log_partition(emissions, mask)
    nll = crf.nll(emissions, tags, mask)
    best = crf.decode(emissions, mask)
    with torch.no_grad():
        for r, n in enumerate(lengths):
            z, path, scores = brute_force(crf, emissions[r], n)
            assert float(log_z[r]) == pytest.approx(float(z), abs=1e-4)
            assert best[r] == path
            gold = tuple(tags[r, :n].tolist())
            assert float(nll[r]) == pytest.approx(float(z) - scores[gold], abs=1e-4)
    assert bool((nll > 0).all())  # a probability below 1
    nll.sum().backward()  # gradients reach every parameter
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in crf.parameters())


def test_a_constant_per_token_changes_nothing():
    """Log-probabilities and logits give the same decoding and the same NLL (the report decodes
    the teacher's softmax output)."""
    crf = random_crf(4, seed=1)
    logits = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    tags = torch.randint(0, 4, (2, 5))
    logp = torch.log_softmax(logits, -1)
    assert crf.decode(logits, mask) == crf.decode(logp, mask)
    torch.testing.assert_close(crf.nll(logits, tags, mask), crf.nll(logp, tags, mask))


def test_compact_moves_the_kept_positions_first():
    values = torch.arange(12).view(2, 6)
    keep = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    out, mask = compact(values, keep)
    assert out[mask].tolist() == [1, 3, 4, 6, 11] and mask.tolist() == [[True] * 3, [True, True, False]]
    vec, _ = compact(torch.randn(2, 6, 3), keep)
    assert vec.shape == (2, 3, 3)


def test_bad_shapes_are_errors():
    crf = LinearChainCRF(3)
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode(torch.zeros(1, 3, 3), torch.tensor([[False, True, True]]))
    with pytest.raises(ValueError, match="labels_num"):
        LinearChainCRF(1)


def test_token_exit_target_with_crf_trains_and_round_trips(tmp_path):
    from uer.checkpoint import load_model, save_checkpoint
    from uer.config import config_from_dict
    from uer.model_builder import build_model

    config = config_from_dict({
        "embedding": {"components": ["word", {"name": "pos", "max_seq_length": 16}, "seg"], "emb_size": 16, "dropout": 0.0},
        "encoder": {"name": "transformer", "hidden_size": 16, "layers_num": 2, "heads_num": 2, "feedforward_size": 24},
        "target": {"components": [{"name": "token_exit", "branch_size": 8, "crf": True}]},
    })
    torch.manual_seed(0)
    model = build_model(config, vocab_size=30, labels_num=5)
    target = model.target.components["token_exit"]
    assert isinstance(target.crf, LinearChainCRF)
    src = torch.randint(5, 30, (3, 7))
    seg = torch.ones(3, 7, dtype=torch.long)
    seg[1, 5:] = 0
    tgt = torch.randint(0, 5, (3, 7))
    tgt[:, 0] = -100
    tgt[seg == 0] = -100
    out = model({"src": src, "seg": seg, "tgt_tag": tgt})
    assert float(out["token_exit_crf_nll"]) > 0  # the model prefixes each target's outputs with its name
    out["loss"].backward()
    assert target.crf.transitions.grad is not None and float(target.crf.transitions.grad.abs().sum()) > 0
    # stage 1 trains the CRF (it is not a student), and it is saved and loaded strictly
    from uer.exit.training import split_parameters

    backbone, students = split_parameters(model)
    assert "target.components.token_exit.crf.transitions" in {n for n, _ in backbone}
    save_checkpoint(tmp_path / "m.pt", model, config, id2label=list("OABCD"), vocab_size=30, labels_num=5)
    loaded, _ = load_model(tmp_path / "m.pt")
    assert torch.equal(loaded.target.components["token_exit"].crf.transitions, target.crf.transitions)
