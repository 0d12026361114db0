"""Every registered component builds into a full model from a tiny odd-sized config, gives the
exact shapes, finite values, and a gradient on every trainable parameter.

The sweeps iterate the registries' ``names()``: a new registration is covered without editing this file.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import uer
from uer.config import config_from_dict
from uer.embeddings import EMBEDDINGS
from uer.encoders import ENCODERS
from uer.encoders.configs import EncoderConfig
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS

VOCAB, HIDDEN, HEADS, FFN, EMB, FACTORISED_EMB = 99, 32, 4, 37, 32, 24
LABELS = 3
LENGTHS = (9, 6, 2)  # B = 3, T = 9: one full sample, two padded on the right
B, T = len(LENGTHS), max(LENGTHS)
SIZES = {"hidden_size": HIDDEN, "layers_num": 2, "heads_num": HEADS, "feedforward_size": FFN}


def vocab_tokens() -> list[str]:
    """99 tokens: BERT-style specials, words and ``##`` continuations, spelled from 8 letters."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = []
    for i in range(VOCAB - len(specials)):
        word = "".join("abdeikos"[int(d)] for d in f"{i + 8:o}")  # base-8 digits -> letters
        words.append(("##" + word) if i % 3 == 0 else word)
    return specials + words


def encoder_spec(name: str, **override) -> dict:
    """The tiny sizes for the fields this encoder's config has."""
    config = ENCODERS.entry(name).config
    assert issubclass(config, EncoderConfig), f"encoder {name!r}: its config must extend EncoderConfig"
    fields = {f.name for f in dataclasses.fields(config)}
    return {"name": name, **{k: v for k, v in SIZES.items() if k in fields}, **override}


def build_on_some_encoder(targets, emb_size=EMB):
    """The model on the first encoder (transformer first) that every target accepts: a target
    that cannot learn on an encoder (bilm needs two directions) refuses it when built."""
    refusals = []
    for name in ["transformer", *(n for n in ENCODERS.names() if n != "transformer")]:
        try:
            return build(encoder_spec(name), targets=targets, emb_size=emb_size)
        except ValueError as exc:
            refusals.append(f"{name}: {exc}")
    raise AssertionError(f"no encoder accepts targets {targets}: " + "; ".join(refusals))


def build(encoder=None, targets=("mlm",), components=("word", "pos", "seg"), emb_size=EMB, subencoder=None):
    data = {
        "embedding": {"emb_size": emb_size, "components": list(components)},
        "encoder": encoder or encoder_spec("transformer"),
        "target": {"components": list(targets)},
    }
    if subencoder is not None:
        data["subencoder"] = subencoder
    torch.manual_seed(0)
    return uer.build_model(config_from_dict(data), labels_num=LABELS, vocab_tokens=vocab_tokens())


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, VOCAB, (B, T), generator=g)
    seg = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        seg[i, : (n + 1) // 2] = 1
        seg[i, (n + 1) // 2 : n] = 2
    src[seg == 0] = 0
    tgt_mlm = torch.full_like(src, -100)
    tgt_mlm[:, 1::2] = src[:, 1::2]
    tgt_mlm[seg == 0] = -100
    return {
        "src": src,
        "seg": seg,
        "tgt_mlm": tgt_mlm,
        "tgt_nsp": torch.tensor([0, 1, 0]),
        "tgt_sop": torch.tensor([1, 0, 1]),
        "tgt_cls": torch.tensor([0, 2, 1]),
        "tgt_tag": torch.where(seg > 0, src % 3, -100),  # tagging / token_exit: a tag per real token
    }


def check_model(model, what: str) -> dict[str, torch.Tensor]:
    """Shapes, finite values, and a finite, non-zero gradient on every trainable parameter.

    A target with a second training stage (``distill_loss``: FastBERT's students learn only
    there) adds that stage's loss, so "every parameter" means every parameter some stage trains.
    """
    batch = make_batch()
    torch.manual_seed(1)
    model.train()
    emb = model.embed(batch["src"], batch["seg"])
    assert emb.shape == (B, T, HIDDEN), what
    layers = model.encoder.forward_layers(emb, batch["seg"])
    assert len(layers) == model.encoder.layers_num, what
    for hidden in layers:
        assert hidden.shape == (B, T, model.encoder.output_size), what
        assert torch.isfinite(hidden).all(), what
    out = model(batch)
    assert out["loss"].shape == (), what
    for key, value in out.items():
        assert torch.isfinite(value).all(), f"{what}: {key} = {value}"
    for name in model.target.components:
        assert out[f"{name}_loss"].shape == (), f"{what}: {name}"
    loss = out["loss"]
    padding = batch["seg"] > 0
    for target in model.target.components.values():
        if hasattr(target, "distill_loss"):  # a second training stage (FastBERT's students)
            loss = loss + target.distill_loss(layers, padding)["loss"]
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, what
    for name, p in trainable:
        assert p.grad is not None, f"{what}: {name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{what}: {name} has a non-finite gradient"
        # Whole tensors: a row may legitimately get zero (positions >= T, padding's segment row).
        assert p.grad.abs().sum() > 0, f"{what}: {name} has an all-zero gradient"
    return out


@pytest.mark.parametrize("emb_size", [EMB, FACTORISED_EMB])
@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder(name, emb_size):
    model = build(encoder_spec(name), targets=("mlm", "nsp"), emb_size=emb_size)
    assert model.encoder.output_size == HIDDEN
    check_model(model, f"encoder {name} emb {emb_size}")


@pytest.mark.parametrize("name", EMBEDDINGS.names())
def test_every_embedding_component(name):
    components = ["word"] if name == "word" else ["word", name]
    model = build(components=components)
    check_model(model, f"embedding {name}")


def test_position_rows_beyond_the_batch_get_a_zero_gradient():
    """The honest version of 'every parameter has a gradient' for learned positions."""
    model = build(components=["word", {"name": "pos", "max_seq_length": 16}, "seg"])
    check_model(model, "pos")
    grad = model.embedding.components["pos"].embedding.weight.grad  # (16, E)
    assert (grad[:T].abs().sum(1) > 0).all()
    assert (grad[T:] == 0).all()


@pytest.mark.parametrize("emb_size", [EMB, FACTORISED_EMB])
@pytest.mark.parametrize("name", SUBENCODERS.names())
def test_every_subencoder(name, emb_size):
    model = build(subencoder={"name": name, "max_chars": 5}, emb_size=emb_size)
    src = make_batch()["src"]
    assert model.subencoder(src).shape == (B, T, emb_size)
    check_model(model, f"subencoder {name} emb {emb_size}")


@pytest.mark.parametrize("emb_size", [EMB, FACTORISED_EMB])
@pytest.mark.parametrize("name", TARGETS.names())
def test_every_target(name, emb_size):
    out = check_model(build_on_some_encoder((name,), emb_size), f"target {name} emb {emb_size}")
    assert torch.equal(out["loss"], out[f"{name}_loss"])


def test_all_targets_together_sum_their_losses():
    names = TARGETS.names()
    out = check_model(build_on_some_encoder(names), "all targets")
    assert torch.allclose(out["loss"], sum(out[f"{n}_loss"] for n in names))


VARIANTS = [
    {"mask": "fully_visible"}, {"mask": "causal"}, {"mask": "causal_with_prefix"},
    {"layernorm_positioning": "post"}, {"layernorm_positioning": "pre"},
    {"layernorm": "normal"}, {"layernorm": "rms"},
    {"act": "gelu"}, {"act": "relu"}, {"act": "silu"},
    {"parameter_sharing": True}, {"parameter_sharing": True, "layernorm_positioning": "pre"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()))
def test_transformer_variants(variant):
    model = build(encoder_spec("transformer", **variant), targets=("mlm", "lm"))
    for key, value in variant.items():
        assert getattr(model.encoder.cfg, key) == value
    check_model(model, f"transformer {variant}")


@pytest.mark.parametrize("positioning", ["post", "pre"])
def test_parameter_sharing_keeps_one_layer(positioning):
    def encoder_params(**kw):
        model = build(encoder_spec("transformer", layernorm_positioning=positioning, **kw))
        return model, sum(p.numel() for p in model.encoder.parameters())

    shared, shared_count = encoder_params(layers_num=3, parameter_sharing=True)
    _, one_layer_count = encoder_params(layers_num=1)
    _, unshared_count = encoder_params(layers_num=3)
    assert shared_count == one_layer_count < unshared_count
    assert len(shared.encoder.transformer) == 1
    # The one layer really runs three times: each layer's output differs from the previous one.
    shared.eval()
    batch = make_batch()
    layers = shared.encoder.forward_layers(shared.embed(batch["src"], batch["seg"]), batch["seg"])
    assert len(layers) == 3
    assert not torch.allclose(layers[0], layers[1]) and not torch.allclose(layers[1], layers[2])
