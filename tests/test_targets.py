"""mlm / nsp / sop / lm / bilm / cls: the losses equal a hand computation and read only what they should."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import uer
from uer.config import config_from_dict
from uer.targets import TARGETS

V, H, E = 99, 32, 24


def target(name: str, hidden_size: int = H, labels_num=None, **fields):
    torch.manual_seed(0)
    return TARGETS.build({"name": name, **fields}, vocab_size=V, hidden_size=hidden_size, emb_size=E,
                         labels_num=labels_num, layers_num=2).eval()


def batch(lengths=(6, 4, 1), seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    seg = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        seg[i, :n] = 1
    src = torch.randint(5, V, seg.shape, generator=g).masked_fill(seg == 0, 0)
    return {"src": src, "seg": seg, "tgt_nsp": torch.tensor([0, 1, 1])[: len(lengths)],
            "tgt_sop": torch.tensor([1, 0, 1])[: len(lengths)]}


def hidden_for(b, size=H, seed=1):
    return torch.randn(*b["src"].shape, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,key", [("nsp", "tgt_nsp"), ("sop", "tgt_sop")])
def test_sentence_pair_targets(name, key):
    tgt, b = target(name), batch()
    assert isinstance(tgt.dense, torch.nn.Linear) and tgt.dense.weight.shape == (H, H)  # BERT's pooler
    assert isinstance(tgt.output, torch.nn.Linear) and tgt.output.weight.shape == (2, H)  # seq_relationship
    assert sorted(n for n, _ in tgt.named_parameters()) == ["dense.bias", "dense.weight", "output.bias", "output.weight"]
    hidden = hidden_for(b)
    out = tgt(hidden, b)
    logits = tgt.output(torch.tanh(tgt.dense(hidden[:, 0])))
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, b[key]))
    assert out["acc"] == (logits.argmax(-1) == b[key]).float().mean()
    assert not out["acc"].requires_grad
    changed = hidden.clone()
    changed[:, 1:] += 1.0  # only the first token is read
    torch.testing.assert_close(tgt(changed, b)["loss"], out["loss"], rtol=0, atol=0)
    with pytest.raises(KeyError, match=key):
        tgt(hidden, {"src": b["src"], "seg": b["seg"]})


def next_token_loss_by_hand(head, hidden, src, seg, step: int) -> torch.Tensor:
    """step +1: position t predicts t + 1 (lm); step -1: t predicts t - 1 (bilm's backward half)."""
    losses = []
    for i in range(src.shape[0]):
        for t in range(src.shape[1]):
            u = t + step
            if 0 <= u < src.shape[1] and seg[i, t] > 0 and seg[i, u] > 0:
                losses.append(F.cross_entropy(head(hidden[i, t][None]), src[i, u][None]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("head", ["plain", "mlm"])
@pytest.mark.parametrize("hidden_size", [E, H])  # H != E: the plain head projects
def test_lm_loss_is_next_token_cross_entropy(head, hidden_size):
    tgt, b = target("lm", hidden_size=hidden_size, head=head), batch()
    hidden = hidden_for(b, hidden_size)
    out = tgt(hidden, b)
    expected = next_token_loss_by_hand(tgt.head, hidden, b["src"], b["seg"], +1)
    torch.testing.assert_close(out["loss"], expected)
    assert out["denominator"] == 5 + 3 + 0  # lengths 6, 4, 1: n - 1 pairs each
    assert tgt.tied_decoder() is tgt.head.decoder and tgt.head.decoder.weight.shape == (V, E)


def test_lm_never_predicts_padding():
    tgt, b = target("lm"), batch()
    hidden = hidden_for(b)
    loss = tgt(hidden, b)["loss"]
    changed = hidden.clone()
    changed[1, 3:] += 5.0  # sample 1 has 4 real tokens: position 3's next token is padding
    changed[2, :] += 5.0  # a one-token sample has nothing to predict
    torch.testing.assert_close(tgt(changed, b)["loss"], loss, rtol=0, atol=0)
    changed[1, 2] += 5.0  # position 2 predicts the real token 3
    assert not torch.allclose(tgt(changed, b)["loss"], loss)


@pytest.mark.parametrize("name", ["lm", "bilm"])
def test_nothing_to_predict_gives_a_zero_loss_with_a_graph(name):
    tgt, b = target(name), batch(lengths=(1, 1, 1))
    hidden = hidden_for(b).requires_grad_()
    out = tgt(hidden, b)
    assert out["loss"] == 0 and out["loss"].requires_grad
    out["loss"].backward()
    assert hidden.grad is not None and (hidden.grad == 0).all()


def test_bilm_halves_predict_next_and_previous():
    tgt, b = target("bilm"), batch()
    hidden = hidden_for(b)
    out = tgt(hidden, b)
    half = H // 2
    forward = next_token_loss_by_hand(tgt.head, hidden[..., :half], b["src"], b["seg"], +1)
    backward = next_token_loss_by_hand(tgt.head, hidden[..., half:], b["src"], b["seg"], -1)
    torch.testing.assert_close(out["loss_forward"], forward)
    torch.testing.assert_close(out["loss_backward"], backward)
    torch.testing.assert_close(out["loss"], forward + backward)
    assert not out["loss_forward"].requires_grad and not out["loss_backward"].requires_grad
    # Each half feeds only its own direction.
    changed = hidden.clone()
    changed[..., half:] += 1.0
    changed_out = tgt(changed, b)
    torch.testing.assert_close(changed_out["loss_forward"], out["loss_forward"], rtol=0, atol=0)
    assert not torch.allclose(changed_out["loss_backward"], out["loss_backward"])


def test_bilm_needs_an_even_hidden_size():
    with pytest.raises(ValueError, match="odd"):
        target("bilm", hidden_size=33)


def build(targets, encoder=None, **emb):
    data = {
        "embedding": {"emb_size": E, "components": ["word", "pos"], **emb},
        "encoder": encoder or {"name": "transformer", "hidden_size": H, "layers_num": 1, "heads_num": 4,
                               "feedforward_size": 37, "mask": "causal"},
        "target": {"components": targets},
    }
    torch.manual_seed(0)
    return uer.build_model(config_from_dict(data), vocab_size=V)


BILSTM = {"name": "bilstm", "hidden_size": H, "layers_num": 2}


@pytest.mark.parametrize("name,encoder", [("lm", None), ("bilm", BILSTM), ("mlm", None)])
def test_builder_ties_the_decoder_to_the_word_embedding(name, encoder):
    tied = build([name], encoder)
    assert tied.target.components[name].head.decoder.weight is tied.embedding.word.weight
    untied = build([{"name": name, "tie_weights": False}], encoder)
    assert untied.target.components[name].head.decoder.weight is not untied.embedding.word.weight


@pytest.mark.parametrize("encoder", [None, {"name": "lstm", "hidden_size": H, "layers_num": 1}])
def test_bilm_is_refused_on_an_encoder_without_two_directions(encoder):
    # A transformer (or a one-way LSTM) has no [forward | backward] halves: position t already
    # sees the token the "backward" half is asked to predict, so the loss would teach nothing.
    with pytest.raises(ValueError, match="target 'bilm' needs a bidirectional RNN encoder"):
        build(["bilm"], encoder)


def test_bilm_on_a_bilstm_reports_both_directions():
    model = build(["bilm"], encoder=BILSTM).eval()
    out = model(batch())
    for key in ("bilm_loss", "bilm_loss_forward", "bilm_loss_backward", "bilm_acc_forward", "bilm_acc_backward"):
        assert out[key].shape == () and torch.isfinite(out[key])
    torch.testing.assert_close(out["loss"], out["bilm_loss_forward"] + out["bilm_loss_backward"])


# ----------------------------------------------------------------------------- mlm
def mlm_batch(seed=0):
    b = batch(seed=seed)
    tgt = torch.full_like(b["src"], -100)
    tgt[0, 1], tgt[0, 4], tgt[1, 2] = 7, 11, 13  # three masked positions, one sample with none
    return {**b, "tgt_mlm": tgt}


@pytest.mark.parametrize("hidden_size", [E, H])  # H != E: the dense layer maps H -> E
def test_mlm_loss_is_cross_entropy_at_the_masked_positions(hidden_size):
    tgt, b = target("mlm", hidden_size=hidden_size), mlm_batch()
    hidden = hidden_for(b, hidden_size)
    out = tgt(hidden, b)
    head = tgt.head  # BERT's transform by hand: dense -> gelu -> LayerNorm -> decoder
    def logits(v):
        return head.decoder(F.layer_norm(F.gelu(head.dense(v)), (E,), head.layer_norm.weight, head.layer_norm.bias, 1e-12))
    picked = torch.stack([hidden[0, 1], hidden[0, 4], hidden[1, 2]])
    labels = torch.tensor([7, 11, 13])
    expected = F.cross_entropy(logits(picked), labels)
    torch.testing.assert_close(out["loss"], expected)
    assert out["denominator"] == 3
    assert out["acc"] == (logits(picked).argmax(-1) == labels).float().mean()
    changed = hidden.clone()
    changed[2] += 3.0  # sample 2 has nothing masked
    changed[0, 0] += 3.0  # an unmasked position
    torch.testing.assert_close(tgt(changed, b)["loss"], out["loss"], rtol=0, atol=0)
    with pytest.raises(KeyError, match="tgt_mlm"):
        tgt(hidden, batch())


def test_mlm_with_nothing_masked_gives_a_zero_loss_with_a_graph():
    tgt, b = target("mlm"), mlm_batch()
    b["tgt_mlm"] = torch.full_like(b["src"], -100)
    hidden = hidden_for(b).requires_grad_()
    out = tgt(hidden, b)
    assert out["loss"] == 0 and out["loss"].requires_grad and out["denominator"] == 0 and out["acc"] == 0
    out["loss"].backward()
    assert hidden.grad is not None and (hidden.grad == 0).all()


# ----------------------------------------------------------------------------- cls
@pytest.mark.parametrize("pooling", ["first", "mean", "max", "last"])
def test_cls_loss_for_every_pooling(pooling):
    labels_num = 3
    tgt, b = target("cls", labels_num=labels_num, pooling=pooling), batch(lengths=(6, 4, 1))
    b["tgt_cls"] = torch.tensor([2, 0, 1])
    hidden = hidden_for(b)
    out = tgt(hidden, b)
    pooled = []
    for i, n in enumerate((6, 4, 1)):  # by hand, over the real tokens only
        real = hidden[i, :n]
        pooled.append({"first": real[0], "mean": real.mean(0), "max": real.max(0).values, "last": real[-1]}[pooling])
    logits = tgt.output(torch.tanh(tgt.dense(torch.stack(pooled))))
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, b["tgt_cls"]))
    assert out["logits"].shape == (3, labels_num)
    changed = hidden.clone()
    changed[b["seg"] == 0] = 1e4  # padding never reaches the result
    torch.testing.assert_close(tgt(changed, b)["loss"], out["loss"], rtol=0, atol=0)


def test_cls_needs_two_labels():
    with pytest.raises(ValueError, match="labels_num >= 2"):
        target("cls", labels_num=1)
