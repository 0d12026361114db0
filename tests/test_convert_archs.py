"""``python -m uer convert``: every architecture against transformers itself.

A random tiny model of each architecture (built from a config object, nothing downloaded) is saved
the HuggingFace way, converted by ``python -m uer convert hf2uer`` with the config made from its
config.json, and must give transformers' hidden states at every layer (fp32, 1e-5) and its head
logits; converting back gives every tensor bit for bit, and the folder loads in transformers.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from uer.__main__ import main as uer_main  # noqa: E402
from uer.checkpoint import load_model, read_checkpoint  # noqa: E402
from uer.config import load_config  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
VOCAB, HIDDEN, HEADS, FFN, LAYERS = 99, 32, 4, 37, 2
BERT_SIZES = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, max_position_embeddings=40)


def _nontrivial(model):
    """Non-zero biases and norms, so that a swapped or dropped tensor shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".ln_" in name or "ln_f" in name:
                p.normal_(0, 0.5)
    return model.eval()


def hf_model(kind: str, vocab: int = VOCAB):
    """A random tiny model of each architecture, seeded."""
    torch.manual_seed(0)
    BERT_SIZES = {**globals()["BERT_SIZES"], "vocab_size": vocab}
    if kind == "bert":
        return transformers.BertForPreTraining(transformers.BertConfig(**BERT_SIZES))
    if kind == "roberta":  # RoBERTa's real layout: one token type, positions from pad_token_id + 1
        return transformers.RobertaForMaskedLM(transformers.RobertaConfig(**{**BERT_SIZES, "max_position_embeddings": 42},
                                                                          type_vocab_size=1, layer_norm_eps=1e-5))
    if kind == "xlm-roberta":
        return transformers.XLMRobertaForMaskedLM(transformers.XLMRobertaConfig(**{**BERT_SIZES, "max_position_embeddings": 42},
                                                                                type_vocab_size=1, layer_norm_eps=1e-5))
    if kind == "albert":
        return transformers.AlbertForPreTraining(transformers.AlbertConfig(**BERT_SIZES, embedding_size=16))
    if kind == "electra":
        return transformers.ElectraForPreTraining(transformers.ElectraConfig(**BERT_SIZES, embedding_size=16))
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=vocab, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                                                                    n_inner=FFN, n_positions=40, bos_token_id=0, eos_token_id=0))
    raise AssertionError(kind)


def batch(kind: str):
    """Ids (never the pad id inside a text), HF token types, attention mask; rows of several lengths."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (4, 17), generator=gen)
    types = torch.zeros_like(ids) if kind in ("roberta", "xlm-roberta", "gpt2") else (torch.arange(17) >= 9).long().expand(4, 17).clone()
    mask = torch.ones_like(ids)
    for row, length in enumerate((17, 5, 12, 1)):
        mask[row, length:] = 0
        ids[row, length:] = 1 if kind in ("roberta", "xlm-roberta") else 0
        types[row, length:] = 0
    return ids, types, mask


def save_hf(kind: str, folder: Path, vocab: int = VOCAB):
    model = _nontrivial(hf_model(kind, vocab))
    model.save_pretrained(folder)
    if kind in ("bert", "electra"):
        (folder / "vocab.txt").write_text("".join(["[PAD]\n", "[UNK]\n", "[CLS]\n", "[SEP]\n", "[MASK]\n"]
                                                  + [f"tok{i}\n" for i in range(VOCAB - 5)]))
    return model


def uer_hidden(model, ids, types, mask, kind):
    """UER segments: 1 = first text, 2 = second, 0 = padding; every layer's output, the embedding first."""
    seg = (types + 1) * mask
    with torch.no_grad():
        emb = model.embed(ids, seg)
        return [emb] + model.encoder.forward_layers(emb, seg)


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta", "albert", "electra", "gpt2"])
def test_hf_to_uer_matches_transformers_and_round_trips_bit_exact(tmp_path, capsys, kind):
    hf_dir, out = tmp_path / "hf", tmp_path / "uer" / "model.pt"
    hf = save_hf(kind, hf_dir)
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"architecture: {kind.replace('xlm-', '')}" in printed
    config = load_config(out.with_suffix(".yaml"))  # the config written beside the weights loads on its own
    model, extra = load_model(out)
    assert model.config == config
    model.eval()

    ids, types, mask = batch(kind)
    real = mask.bool()
    inputs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                  **({} if kind == "gpt2" else {"token_type_ids": types}))
    with torch.no_grad():
        want = hf(**inputs)
    got = uer_hidden(model, ids, types, mask, kind)
    assert len(got) == len(want.hidden_states) == LAYERS + 1
    for i, (g, w) in enumerate(zip(got, want.hidden_states)):
        torch.testing.assert_close(g[real], w[real], **TOL, msg=lambda m: f"{kind} layer {i}: {m}")
    # the heads: MLM / LM logits, sentence-pair logits
    heads = model.target.components
    with torch.no_grad():
        if kind in ("bert", "albert"):
            torch.testing.assert_close(heads["mlm"].head(got[-1])[real], want.prediction_logits[real], **TOL)
            pair = heads["nsp" if kind == "bert" else "sop"].logits(got[-1])
            torch.testing.assert_close(pair, want.seq_relationship_logits if kind == "bert" else want.sop_logits, **TOL)
        elif kind in ("roberta", "xlm-roberta"):
            torch.testing.assert_close(heads["mlm"].head(got[-1])[real], want.logits[real], **TOL)
        elif kind == "gpt2":
            torch.testing.assert_close(heads["lm"].head(got[-1])[real], want.logits[real], **TOL)

    # back: every tensor bit for bit, and transformers loads the folder with the original's outputs
    back = tmp_path / "back"
    assert uer_main(["convert", "uer2hf", str(out), str(back)]) == 0
    original = safetensors_torch.load_file(hf_dir / "model.safetensors")
    returned = safetensors_torch.load_file(back / "model.safetensors")
    assert sorted(original) == sorted(returned)
    for key in original:
        assert original[key].dtype == returned[key].dtype and torch.equal(original[key], returned[key]), key
    reloaded = type(hf).from_pretrained(back).eval()
    with torch.no_grad():
        again = reloaded(**inputs)
    torch.testing.assert_close(again.hidden_states[-1][real], want.hidden_states[-1][real], rtol=0, atol=0)


@pytest.mark.parametrize("lower", [True, False])
def test_the_tokenizer_comes_along_bert_vocab(tmp_path, capsys, lower):
    import json

    from uer.embed import Embedder

    save_hf("bert", tmp_path / "hf")
    vocab = (tmp_path / "hf" / "vocab.txt").read_text().splitlines()
    vocab[10:13] = ["hello", "Hello", "world"]
    (tmp_path / "hf" / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower}))
    assert uer_main(["convert", "hf2uer", str(tmp_path / "hf"), str(tmp_path / "u" / "m.pt")]) == 0
    assert (tmp_path / "u" / "vocab.txt").read_bytes() == (tmp_path / "hf" / "vocab.txt").read_bytes()
    config = load_config(tmp_path / "u" / "m.yaml")
    assert config.tokenizer.name == "bert" and Path(config.tokenizer.vocab_path) == (tmp_path / "u" / "vocab.txt").resolve()
    assert config.tokenizer.do_lower_case is lower
    assert uer_main(["convert", "uer2hf", str(tmp_path / "u" / "m.pt"), str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "vocab.txt").read_bytes() == (tmp_path / "hf" / "vocab.txt").read_bytes()
    ours = Embedder.load(tmp_path / "u" / "m.pt").tokenizer.encode("Hello world")
    assert ours == [10 if lower else 11, 12]  # ids of "hello" / "Hello", "world"
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert back("Hello world", add_special_tokens=False)["input_ids"] == ours


@pytest.mark.parametrize("kind", ["roberta", "gpt2"])
def test_the_tokenizer_comes_along_bytelevel_bpe(tmp_path, capsys, kind):
    """tokenizer.json (or GPT-2's vocab.json + merges.txt) -> uer's bytelevel_bpe with transformers' ids."""
    from tests.test_bytelevel_bpe import train_bytelevel

    from uer.embed import Embedder

    hf_dir = tmp_path / "hf"
    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if kind == "roberta" else ("<|endoftext|>",)
    train_bytelevel(hf_dir, size=300, specials=specials)
    from tokenizers import Tokenizer

    save_hf(kind, hf_dir, Tokenizer.from_file(str(hf_dir / "tokenizer.json")).get_vocab_size())
    if kind == "gpt2":  # the original files instead of tokenizer.json
        tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        tok.model.save(str(hf_dir))  # vocab.json + merges.txt
        (hf_dir / "tokenizer.json").unlink()
        ref = transformers.AutoTokenizer.from_pretrained(hf_dir)  # reads vocab.json + merges.txt
    else:
        ref = transformers.RobertaTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json"))
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    emb = Embedder.load(out)  # the converted checkpoint finds its tokenizer through its config
    text = "the quick brown fox, héllo"
    assert emb.tokenizer.encode(text) == ref(text, add_special_tokens=False)["input_ids"]
    assert uer_main(["convert", "uer2hf", str(out), str(tmp_path / "back")]) == 0
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")  # the exported folder's tokenizer loads
    assert back(text, add_special_tokens=False)["input_ids"] == emb.tokenizer.encode(text)
    assert emb.tokenizer.word_start_prefix == "\u0120"


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    """A 100-piece sentencepiece model on our own English sample (trained outside capsys: its
    trainer needs the real stderr)."""
    from tests.test_tokenizers import EN_SAMPLE
    from uer.tokenizers import train_sentencepiece

    return train_sentencepiece(EN_SAMPLE, tmp_path_factory.mktemp("spm") / "tiny", vocab_size=100, character_coverage=1.0)


def test_albert_sentencepiece_comes_along(tmp_path, capsys, spm_model):
    model = spm_model
    hf_dir = tmp_path / "hf"
    save_hf("albert", hf_dir, vocab=100)
    (hf_dir / "spiece.model").write_bytes(model.read_bytes())
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    assert "lower-cases" in capsys.readouterr().out
    config = load_config(out.with_suffix(".yaml"))
    assert config.tokenizer.name == "sentencepiece" and Path(config.tokenizer.spm_model_path).read_bytes() == model.read_bytes()
    assert uer_main(["convert", "uer2hf", str(out), str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "spiece.model").read_bytes() == model.read_bytes()


@pytest.mark.parametrize("name", ["bert", "gpt2", "albert"])
def test_a_uer_model_never_converted_exports_and_matches_transformers(tmp_path, capsys, name):
    """uer -> HF with no HuggingFace history: the architecture is the one the config fits."""
    from uer.checkpoint import save_checkpoint
    from uer.config import config_from_dict
    from uer.model_builder import build_model

    enc = {"name": "transformer", "hidden_size": HIDDEN, "layers_num": LAYERS, "heads_num": HEADS, "feedforward_size": FFN}
    data = {
        "bert": {"embedding": {"components": ["word", {"name": "pos", "max_seq_length": 40}, "seg"]}, "encoder": enc,
                 "target": ["mlm", "nsp"]},
        "gpt2": {"embedding": {"components": ["word", {"name": "pos", "max_seq_length": 40}], "layernorm": "none"},
                 "encoder": {**enc, "layernorm_positioning": "pre", "mask": "causal", "act": "gelu_fast", "layernorm_eps": 1e-5},
                 "target": ["lm"]},
        "albert": {"embedding": {"components": ["word", {"name": "pos", "max_seq_length": 40}, "seg"], "emb_size": 16},
                   "encoder": {**enc, "parameter_sharing": True, "act": "gelu_fast"}, "target": [{"name": "mlm", "act": "gelu_fast"}, "sop"]},
    }[name]
    config = config_from_dict(data, name)
    torch.manual_seed(3)
    model = _nontrivial(build_model(config, vocab_size=VOCAB))
    if name == "gpt2":
        with torch.no_grad():
            model.target.components["lm"].head.decoder.bias.zero_()
    save_checkpoint(tmp_path / "m.pt", model, config, vocab_size=VOCAB)
    assert uer_main(["convert", "uer2hf", str(tmp_path / "m.pt"), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    ids, types, mask = batch("gpt2" if name == "gpt2" else "bert")
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, **({} if name == "gpt2" else {"token_type_ids": types}),
                  output_hidden_states=True).hidden_states
    got = uer_hidden(model, ids, types, mask, name)
    for g, w in zip(got, want):
        torch.testing.assert_close(g[mask.bool()], w[mask.bool()], **TOL)


def test_gpt2_with_a_trained_output_bias_is_refused(tmp_path, capsys):
    hf_dir = tmp_path / "hf"
    save_hf("gpt2", hf_dir)
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    state = read_checkpoint(out)
    state["model"]["target.components.lm.head.decoder.bias"][3] = 0.5
    torch.save(state, out)
    capsys.readouterr()
    assert uer_main(["convert", "uer2hf", str(out), str(tmp_path / "back")]) == 2
    err = capsys.readouterr().err
    assert "target.components.lm.head.decoder.bias is not zero, but GPT-2's LM head has no bias" in err
    assert not (tmp_path / "back").exists()


def test_cli_errors_are_one_line_and_nothing_is_replaced(tmp_path, capsys):
    hf_dir = tmp_path / "hf"
    save_hf("bert", hf_dir)
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 2  # an existing OUT needs --force
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out), "--force"]) == 0
    assert uer_main(["convert", "hf2uer", str(tmp_path / "nothere"), str(tmp_path / "x.pt")]) == 2
    assert "HF_DIR" in capsys.readouterr().err
    import json

    cfg = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**cfg, "model_type": "t5"}))
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(tmp_path / "y.pt")]) == 2
    err = capsys.readouterr().err
    assert "model_type 't5' is not supported; supported: albert, bert, electra, gpt2, roberta, xlm-roberta" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "y.pt").exists()
    assert uer_main(["convert", "uer2hf", str(out), str(tmp_path / "z"), "--arch", "nope"]) == 2
    err = capsys.readouterr().err
    assert "argument --arch: invalid choice: 'nope'" in err and len(err.strip().splitlines()) == 1


def test_bert_with_only_a_fast_tokenizer_file_gets_its_vocab_txt(tmp_path, capsys):
    """Folders saved by recent transformers may hold tokenizer.json and no vocab.txt."""
    hf_dir = tmp_path / "hf"
    save_hf("bert", hf_dir)
    from tokenizers import BertWordPieceTokenizer

    words = (hf_dir / "vocab.txt").read_text()
    BertWordPieceTokenizer(str(hf_dir / "vocab.txt"), lowercase=False).save(str(hf_dir / "tokenizer.json"))
    (hf_dir / "vocab.txt").unlink()
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    assert (tmp_path / "u" / "vocab.txt").read_text() == words
    assert load_config(out.with_suffix(".yaml")).tokenizer.do_lower_case is False


def test_xlm_roberta_with_a_unigram_tokenizer_json(tmp_path, capsys):
    """XLM-R's tokenizer as a fast tokenizer's file: the same ids as transformers', "▁" marks word starts."""
    from tokenizers import SentencePieceUnigramTokenizer

    from tests.test_bytelevel_bpe import TEXTS
    from uer.embed import Embedder

    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(TEXTS * 5, vocab_size=80, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                unk_token="<unk>", show_progress=False)
    unigram.save(str(hf_dir / "tokenizer.json"))
    save_hf("xlm-roberta", hf_dir, unigram.get_vocab_size())
    out = tmp_path / "u" / "model.pt"
    assert uer_main(["convert", "hf2uer", str(hf_dir), str(out)]) == 0
    ref = transformers.XLMRobertaTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json"))
    tok = Embedder.load(out).tokenizer
    text = "the quick brown fox"
    assert [tok.vocab.cls_id] + tok.encode(text) + [tok.vocab.sep_id] == ref(text)["input_ids"]
    assert tok.word_start_prefix == "\u2581"
    assert uer_main(["convert", "uer2hf", str(out), str(tmp_path / "back")]) == 0
    assert transformers.AutoConfig.from_pretrained(tmp_path / "back").model_type == "xlm-roberta"


def test_old_gpt2_bin_with_mask_buffers_and_an_explicit_lm_head(tmp_path, capsys):
    """pytorch_model.bin from older transformers: attn.bias / attn.masked_bias buffers, lm_head.weight stored."""
    hf = save_hf("gpt2", tmp_path / "ref")
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    for i in range(LAYERS):
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(40, 40, dtype=torch.bool)).view(1, 1, 40, 40)
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    old = tmp_path / "old"
    old.mkdir()
    torch.save(state, old / "pytorch_model.bin")
    (old / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())
    assert uer_main(["convert", "hf2uer", str(old), str(tmp_path / "u" / "m.pt")]) == 0
    printed = capsys.readouterr().out
    assert "transformer.h.0.attn.masked_bias" in printed and "lm_head.weight" in printed  # carried / derived: said so
    assert uer_main(["convert", "uer2hf", str(tmp_path / "u" / "m.pt"), str(tmp_path / "back")]) == 0
    back = safetensors_torch.load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(state)
    for key in state:
        assert torch.equal(back[key], state[key]), key
