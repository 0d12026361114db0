"""uer.fast: the fused path gives the eager encoder's outputs, layer by layer and per sub-batch."""
import pytest
import torch

import uer.fast
from uer.config import config_from_dict
from uer.fast import FastContext, optimize_for_inference
from uer.model_builder import build_model

TOL = dict(rtol=1e-4, atol=1e-4)


def tiny_model(**encoder):
    torch.manual_seed(0)
    config = config_from_dict({
        "embedding": {"emb_size": 32, "components": ["word", "pos", "seg"]},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 3, "heads_num": 4, "feedforward_size": 37, **encoder},
        "target": {"components": ["mlm"]},
    }, "tiny")
    model = build_model(config, vocab_size=99).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0, 0.5)
    return model


def batch(lengths, t=13):
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(1, 99, (len(lengths), t), generator=gen)
    pos = torch.arange(t)[None]
    lengths = torch.tensor(lengths)[:, None]
    seg = torch.where(pos < lengths, 1 + (pos >= lengths // 2).long(), 0)  # A then B, then padding
    return src * (seg > 0), seg


def assert_real_close(got, want, seg):
    real = seg > 0
    torch.testing.assert_close(got[real], want[real], **TOL)


ENCODERS = [{}, {"layernorm_positioning": "pre"}, {"parameter_sharing": True}, {"act": "gelu_fast"},
            {"act": "relu"}, {"mask": "causal"}, {"layernorm": "rms", "act": "silu"}]


@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "bert")
@pytest.mark.parametrize("lengths", [[13, 13, 13], [13, 4, 9, 1], [6, 3]], ids=["full", "padded", "short"])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "F.linear"])
def test_fused_equals_eager(encoder, lengths, onednn, monkeypatch):
    if not onednn:  # what CUDA / ARM get: the same code on F.linear
        monkeypatch.setattr(uer.fast, "mkldnn_usable", lambda device, dtype: False)
    model = tiny_model(**encoder)
    src, seg = batch(lengths)
    fast = optimize_for_inference(model.embedding, model.encoder, mode="fused")
    assert fast.mode == "fused"
    assert fast.blocks[0].qkv.mkldnn == (onednn and uer.fast.mkldnn_usable(torch.device("cpu"), torch.float32))
    with torch.no_grad():
        emb = model.embed(src, seg)
        want = model.encoder.forward_layers(emb, seg)
        got = fast.forward_layers(fast.embed(src, seg), seg)
        assert_real_close(fast(emb, seg), want[-1], seg)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == torch.float32
        assert_real_close(g, w, seg)
        assert not g[seg == 0].any()  # padding positions are zeros


def test_eager_mode_is_the_encoder_itself():
    model = tiny_model()
    src, seg = batch([13, 4, 9])
    fast = optimize_for_inference(model.embedding, model.encoder, mode="eager")
    with torch.no_grad():
        emb = model.embed(src, seg)
        torch.testing.assert_close(fast(emb, seg), model.encoder(emb, seg), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["fused", "eager"])
def test_layer_stepping_with_shrinking_batch(mode):
    """FastBERT's loop: one layer at a time, samples leave the batch, the rest go on unchanged."""
    model = tiny_model()
    src, seg = batch([13, 4, 9, 2, 11])
    fast = optimize_for_inference(model.embedding, model.encoder, mode=mode)
    with torch.no_grad():
        want = model.encoder.forward_layers(model.embed(src, seg), seg)
        ctx, hidden, alive = fast.context(seg), fast.embed(src, seg), torch.arange(5)
        for i, keep in enumerate([torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 2, 4]), torch.tensor([1, 2])]):
            hidden, ctx, alive = hidden[keep], ctx.select(keep), alive[keep]
            hidden = fast.layer(i, hidden, ctx)
            assert_real_close(hidden, want[i][alive], seg[alive])
            assert torch.equal(ctx.padding, seg[alive] > 0)  # what FastBERT pools with
    if mode == "fused":
        assert isinstance(ctx, FastContext) and ctx.length == 11  # cut to the longest remaining sample


def test_sample_alone_equals_sample_in_batch():
    model = tiny_model()
    src, seg = batch([13, 5])
    fast = optimize_for_inference(model.embedding, model.encoder)
    with torch.no_grad():
        both = fast(fast.embed(src, seg), seg)
        alone = fast(fast.embed(src[1:, :5], seg[1:, :5]), seg[1:, :5])
    torch.testing.assert_close(both[1, :5], alone[0], rtol=1e-5, atol=1e-5)


def test_bf16_is_close_and_keeps_the_callers_dtype():
    model = tiny_model()
    src, seg = batch([13, 4, 9])
    fast = optimize_for_inference(model.embedding, model.encoder, dtype=torch.bfloat16)
    with torch.no_grad():
        want = model.encode(src, seg)
        got = fast(fast.embed(src, seg), seg)
    assert got.dtype == torch.float32
    error = (got - want)[seg > 0].abs().max()
    assert 0 < error < 0.1  # bf16 differs from fp32, but not by much
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched


def test_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="unknown mode 'turbo'"):
        optimize_for_inference(model.embedding, model.encoder, mode="turbo")
    with pytest.raises(ValueError, match="dtype"):
        optimize_for_inference(model.embedding, model.encoder, dtype=torch.float16)
