"""The encoder contract: the per-layer API agrees with forward, padding never changes a real
token's output, and causal encoders never look ahead."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from uer.encoders import ENCODERS

HIDDEN, HEADS, FFN = 32, 4, 37
LENGTHS = (7, 4, 2)  # B = 3, T = 7
T = max(LENGTHS)


def make_encoder(name: str, **override):
    fields = {f.name for f in dataclasses.fields(ENCODERS.entry(name).config)}
    sizes = {"hidden_size": HIDDEN, "layers_num": 3, "heads_num": HEADS, "feedforward_size": FFN}
    spec = {"name": name, **{k: v for k, v in sizes.items() if k in fields}, **override}
    torch.manual_seed(0)
    return ENCODERS.build(spec).eval()


def segments(lengths=LENGTHS, t=T) -> torch.Tensor:
    """(B, T): the first half of each sample is sentence 1, the rest sentence 2, then padding."""
    seg = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        seg[i, : (n + 1) // 2] = 1
        seg[i, (n + 1) // 2 : n] = 2
    return seg


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings with large garbage at the padding positions: a leak cannot hide."""
    g = torch.Generator().manual_seed(seed)
    seg = segments()
    emb = torch.randn(len(LENGTHS), T, HIDDEN, generator=g)
    emb = torch.where((seg > 0).unsqueeze(-1), emb, 100.0 * torch.randn(emb.shape, generator=g))
    return emb, seg


def options(name: str) -> list[dict]:
    """Each Literal / bool field of the encoder's config at each of its non-default values, one at a time."""
    cls = ENCODERS.entry(name).config
    hints, default, out = typing.get_type_hints(cls), cls(), []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        values = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else (False, True) if tp is bool else ()
        out += [{f.name: v} for v in values if v != getattr(default, f.name)]
    return out


ALL = [(name, kw) for name in ENCODERS.names() for kw in [{}] + options(name)] + [
    ("cnn", {"kernel_size": 4}),  # even kernel: asymmetric padding
    ("gatedcnn", {"block_size": 1, "kernel_size": 2}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in ALL]


@pytest.mark.parametrize("name,kw", ALL, ids=IDS)
def test_layers_agree_with_forward(name, kw):
    encoder = make_encoder(name, **kw)
    emb, seg = inputs()
    with torch.no_grad():
        full = encoder(emb, seg)
        layers = encoder.forward_layers(emb, seg)
        ctx = encoder.context(seg)  # FastBERT's way: one layer at a time
        hidden = emb
        stepped = []
        for i in range(encoder.layers_num):
            hidden = encoder.layer(i, hidden, ctx)
            stepped.append(hidden)
    assert full.shape == (len(LENGTHS), T, encoder.output_size)
    assert len(layers) == encoder.layers_num == 3
    torch.testing.assert_close(layers[-1], full, rtol=0, atol=0)
    torch.testing.assert_close(encoder.finish(stepped[-1]), full, rtol=0, atol=0)
    for a, b in zip(layers[:-1], stepped[:-1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(layers[0], layers[1])  # layers are really distinct steps


@pytest.mark.parametrize("name,kw", ALL, ids=IDS)
def test_padding_never_changes_a_real_token(name, kw):
    """A sample alone (no padding) == the same sample inside a padded batch, at every layer."""
    encoder = make_encoder(name, **kw)
    emb, seg = inputs()
    with torch.no_grad():
        batched = encoder.forward_layers(emb, seg)
        for i, n in enumerate(LENGTHS):
            alone = encoder.forward_layers(emb[i : i + 1, :n], seg[i : i + 1, :n])
            for layer, (a, b) in enumerate(zip(alone, batched)):
                torch.testing.assert_close(a[0], b[i, :n], rtol=0, atol=1e-5, msg=lambda m: f"sample {i} layer {layer}: {m}")


def _change_token(encoder, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of the full-length sample before and after changing token k's embedding."""
    emb, seg = inputs()
    emb, seg = emb[:1], seg[:1]
    changed = emb.clone()
    changed[0, k] += torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return encoder(emb, seg), encoder(changed, seg)


@pytest.mark.parametrize("name,kw", ALL, ids=IDS)
def test_causality_is_what_the_encoder_declares(name, kw):
    """``Encoder.causal`` encoders never look ahead; the others do look back (the contrast that
    shows the causal test can fail)."""
    encoder = make_encoder(name, **kw)
    if encoder.causal:
        k = 4
        before, after = _change_token(encoder, k)
        torch.testing.assert_close(after[0, :k], before[0, :k], rtol=0, atol=0)
        assert (after[0, k:] - before[0, k:]).abs().amax(-1).min() > 1e-4  # it does see the present and past
    else:  # token 2 lies in sample 0's first segment (positions 0..3): a prefix LM's prefix sees it too
        before, after = _change_token(encoder, 2)
        assert (after[0, :2] - before[0, :2]).abs().amax() > 1e-4


def test_causal_declarations():
    declared = {name: make_encoder(name).causal for name in ENCODERS.names()}
    assert {name for name, causal in declared.items() if causal} == {"rnn", "lstm", "gru", "gatedcnn"}
    assert make_encoder("transformer", mask="causal").causal
    assert not make_encoder("transformer", mask="causal_with_prefix").causal


def test_causal_with_prefix_sees_the_whole_prefix_but_not_the_future():
    encoder = make_encoder("transformer", mask="causal_with_prefix")  # sample 0: seg 1 = positions 0..3
    before, after = _change_token(encoder, 2)  # inside the prefix: earlier prefix tokens see it
    assert (after[0, :2] - before[0, :2]).abs().amax() > 1e-4
    before, after = _change_token(encoder, 5)  # after the prefix: causal
    torch.testing.assert_close(after[0, :5], before[0, :5], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "birnn", "bilstm", "bigru"])
def test_rnn_layers_are_single_layer_modules(name):
    encoder = make_encoder(name)
    bidirectional = name.startswith("bi")
    assert encoder.output_size == HIDDEN and len(encoder.rnn) == 3
    for rnn in encoder.rnn:
        assert rnn.num_layers == 1 and rnn.bidirectional == bidirectional
        assert rnn.hidden_size == (HIDDEN // 2 if bidirectional else HIDDEN)
    emb, seg = inputs()
    with torch.no_grad():
        out = encoder(emb, seg)
    assert (out[seg == 0] == 0).all()  # packed away: padding positions come out as zeros


def test_bidirectional_rnn_needs_an_even_hidden_size():
    with pytest.raises(ValueError, match="even hidden_size"):
        ENCODERS.build({"name": "bilstm", "hidden_size": 33})


def test_rnn_dropout_acts_between_layers_only():
    encoder = make_encoder("lstm", dropout=0.5).train()
    emb, seg = inputs()
    ctx = encoder.context(seg)
    with torch.no_grad():
        torch.manual_seed(1)
        first_train = encoder.layer(0, emb, ctx)
        first_eval = encoder.eval().layer(0, emb, ctx)
        second_eval = encoder.layer(1, first_eval, ctx)
        torch.manual_seed(1)
        second_train = encoder.train().layer(1, first_eval, ctx)
    torch.testing.assert_close(first_train, first_eval, rtol=0, atol=0)  # the first layer sees clean input
    assert not torch.allclose(second_train, second_eval)


def test_gatedcnn_block_holds_block_size_gated_convolutions():
    encoder = make_encoder("gatedcnn", block_size=3, kernel_size=2)
    assert len(encoder.conv) == 3 and all(len(block) == 3 for block in encoder.conv)
    conv = encoder.conv[0][0]
    assert conv.in_channels == HIDDEN and conv.out_channels == 2 * HIDDEN  # values and gates
