"""uer.fused: the fused path gives the eager encoder's outputs, layer by layer and per sub-batch, for
every TransformerConfig option (generated from the config's own fields), and runs only where it can."""
import dataclasses
import typing

import pytest
import torch

import uer.fused
from uer.config import config_from_dict
from uer.encoders.transformer import TransformerConfig, TransformerEncoder
from uer.fused import SUPPORTED, FusedContext, optimize_for_inference, unsupported
from uer.layers import TransformerLayer
from uer.model_builder import build_model

TOL = dict(rtol=1e-4, atol=1e-4)
HIDDEN = 32
SIZES = {"hidden_size": HIDDEN, "layers_num": 3, "heads_num": 4, "feedforward_size": 37}


def tiny_model(emb_size=HIDDEN, **encoder):
    torch.manual_seed(0)
    config = config_from_dict({
        "embedding": {"emb_size": emb_size, "components": ["word", "pos", "seg"]},
        "encoder": {"name": "transformer", **SIZES, **encoder},
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


def options(cls) -> dict[str, tuple]:
    """The config's own choices: every value of each Literal field, both values of each bool field."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) is typing.Literal:
            out[f.name] = typing.get_args(tp)
        elif tp is bool:
            out[f.name] = (False, True)
    return out


def variants() -> list[dict]:
    """The default, each option's other values one at a time, and every field off its default at once."""
    default = TransformerConfig()
    one_at_a_time = [{name: v} for name, values in options(TransformerConfig).items()
                     for v in values if v != getattr(default, name)]
    all_at_once = {name: values[-1] if values[-1] != getattr(default, name) else values[0]
                   for name, values in options(TransformerConfig).items()}
    return [{}] + one_at_a_time + [all_at_once, {"emb_size": 24}]  # emb_size: the factorised (ALBERT) embedding


VARIANTS = variants()


def test_every_config_field_is_swept_or_a_plain_number():
    """A new TransformerConfig field is either a Literal/bool (swept above automatically) or a number
    the fused path must state in SUPPORTED; anything else is flagged here."""
    swept = options(TransformerConfig)
    hints = typing.get_type_hints(TransformerConfig)
    for f in dataclasses.fields(TransformerConfig):
        assert f.name in swept or hints[f.name] in (int, float), f"TransformerConfig.{f.name}: add it to tests/test_fused.py"
        assert f.name in SUPPORTED, f"TransformerConfig.{f.name} is not in uer.fused.SUPPORTED: the fused path refuses it"
    assert {"causal_with_prefix", False} <= {v for variant in VARIANTS for v in variant.values()}  # bias: false too


@pytest.mark.parametrize("encoder", VARIANTS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "bert")
@pytest.mark.parametrize("lengths", [[13, 13, 13], [13, 4, 9, 1], [6, 3]], ids=["full", "padded", "short"])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "F.linear"])
def test_fused_equals_eager(encoder, lengths, onednn, monkeypatch):
    if not onednn:  # what CUDA / ARM get: the same code on F.linear
        monkeypatch.setattr(uer.fused, "mkldnn_usable", lambda device, dtype: False)
    model = tiny_model(**encoder)
    src, seg = batch(lengths)
    fused = optimize_for_inference(model.embedding, model.encoder, mode="fused")
    assert fused.mode == "fused", fused.reason
    first = next(iter(fused.linears.values()))
    assert first.mkldnn == (onednn and uer.fused.mkldnn_usable(torch.device("cpu"), torch.float32))
    with torch.no_grad():
        emb = model.embed(src, seg)
        want = model.encoder.forward_layers(emb, seg)
        got = fused.forward_layers(fused.embed(src, seg), seg)
        assert_real_close(fused(emb, seg), want[-1], seg)
        ctx, hidden = fused.context(seg), emb  # the per-layer step, as FastBERT uses it
        for i in range(3):
            hidden = fused.layer(i, hidden, ctx)
            assert_real_close(hidden if i < 2 else fused.finish(hidden), want[i], seg)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == torch.float32
        assert_real_close(g, w, seg)
        assert not g[seg == 0].any()  # padding positions are zeros


class RotaryLayer(TransformerLayer):
    """Stands for a new layer feature the fused path does not know."""


@dataclasses.dataclass(frozen=True)
class RotaryConfig(TransformerConfig):
    rotary: bool = False


def test_fails_closed_with_a_stated_reason():
    model = tiny_model()
    assert unsupported(model.encoder) is None
    fused = optimize_for_inference(model.embedding, model.encoder)
    assert (fused.mode, fused.reason.split(";")[0]) == ("fused", "fused transformer")

    model.encoder.transformer[1] = RotaryLayer(hidden_size=32, heads_num=4, feedforward_size=37, dropout=0.0,
                                               attention_dropout=0.0, act="gelu", norm="normal", norm_eps=1e-12,
                                               positioning="post")
    fallback = optimize_for_inference(model.embedding, model.encoder)
    assert (fallback.mode, fallback.reason) == ("eager", "layer 1: layer RotaryLayer is not TransformerLayer")
    with pytest.raises(ValueError, match="mode 'fused': layer 1: layer RotaryLayer is not TransformerLayer"):
        optimize_for_inference(model.embedding, model.encoder, mode="fused")

    new_field = TransformerEncoder(RotaryConfig(**SIZES))  # a new config field, not in SUPPORTED
    assert unsupported(new_field) == "config RotaryConfig is not TransformerConfig"
    encoder = TransformerEncoder(TransformerConfig(**SIZES))
    object.__setattr__(encoder.cfg, "mask", "sliding_window")  # a value the fused path has not seen
    assert unsupported(encoder) == "TransformerConfig.mask='sliding_window' is not supported by uer.fused"


def test_a_field_missing_from_supported_runs_eager(monkeypatch):
    monkeypatch.setattr(uer.fused, "SUPPORTED", {k: v for k, v in SUPPORTED.items() if k != "bias"})
    model = tiny_model()
    fused = optimize_for_inference(model.embedding, model.encoder)
    assert (fused.mode, fused.reason) == ("eager", "TransformerConfig.bias is not known to uer.fused")


def test_other_encoders_run_eager_and_say_why():
    torch.manual_seed(0)
    config = config_from_dict({"embedding": {"emb_size": 32, "components": ["word", "pos", "seg"]},
                               "encoder": {"name": "lstm", "hidden_size": 32, "layers_num": 2},
                               "target": {"components": ["mlm"]}}, "tiny")
    model = build_model(config, vocab_size=99).eval()
    fused = optimize_for_inference(model.embedding, model.encoder)
    assert (fused.mode, fused.reason) == ("eager", "LstmEncoder has no fused path")
    src, seg = batch([13, 4])
    with torch.no_grad():
        emb = model.embed(src, seg)
        torch.testing.assert_close(fused(emb, seg), model.encoder(emb, seg), rtol=0, atol=0)


def test_eager_mode_is_the_encoder_itself():
    model = tiny_model()
    src, seg = batch([13, 4, 9])
    fused = optimize_for_inference(model.embedding, model.encoder, mode="eager")
    assert (fused.mode, fused.reason) == ("eager", "asked for eager")
    with torch.no_grad():
        emb = model.embed(src, seg)
        torch.testing.assert_close(fused(emb, seg), model.encoder(emb, seg), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["fused", "eager"])
def test_layer_stepping_with_shrinking_batch(mode):
    """FastBERT's loop: one layer at a time, samples leave the batch, the rest go on unchanged."""
    model = tiny_model()
    src, seg = batch([13, 4, 9, 2, 11])
    fused = optimize_for_inference(model.embedding, model.encoder, mode=mode)
    with torch.no_grad():
        want = model.encoder.forward_layers(model.embed(src, seg), seg)
        ctx, hidden, alive = fused.context(seg), fused.embed(src, seg), torch.arange(5)
        for i, keep in enumerate([torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 2, 4]), torch.tensor([1, 2])]):
            hidden, ctx, alive = hidden[keep], ctx.select(keep), alive[keep]
            hidden = fused.layer(i, hidden, ctx)
            assert_real_close(hidden, want[i][alive], seg[alive])
            assert torch.equal(ctx.real, seg[alive] > 0)  # what FastBERT pools with
    if mode == "fused":
        assert isinstance(ctx, FusedContext) and ctx.length == 11  # cut to the longest remaining sample


def test_sample_alone_equals_sample_in_batch():
    model = tiny_model()
    src, seg = batch([13, 5])
    fused = optimize_for_inference(model.embedding, model.encoder)
    with torch.no_grad():
        both = fused(fused.embed(src, seg), seg)
        alone = fused(fused.embed(src[1:, :5], seg[1:, :5]), seg[1:, :5])
    torch.testing.assert_close(both[1, :5], alone[0], rtol=1e-5, atol=1e-5)


def test_bf16_is_close_and_keeps_the_callers_dtype():
    model = tiny_model()
    src, seg = batch([13, 4, 9])
    fused = optimize_for_inference(model.embedding, model.encoder, dtype=torch.bfloat16)
    with torch.no_grad():
        want = model.encode(src, seg)
        got = fused(fused.embed(src, seg), seg)
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
