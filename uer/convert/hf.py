"""HuggingFace <-> uer for BERT, RoBERTa / XLM-R, ALBERT, ELECTRA and GPT-2, tensor for tensor.

    uer_state, report, meta = hf_to_uer(hf_state, config, ARCHS["roberta"])   # plain dicts of tensors
    hf_state, hf_config, report = uer_to_hf(uer_state, config, meta)

The files (folders in, checkpoints out and back) are :mod:`uer.convert.files`. The tables (which tensor goes where, and how the configs translate) are in :mod:`uer.convert.archs`;
this module applies them. Heads present on one side only are reported, never silently lost: a uer
head the source lacks is kept as initialised (and marked, so converting back does not invent HF
tensors); an HF head the config has no place for is carried inside the checkpoint's ``extra`` so
that HF -> uer -> HF gives back every tensor bit for bit. A backbone tensor that does not fit is an
error naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from uer.config import Config
from uer.convert.archs import ARCHS, Arch, ConversionError, arch_named, guess_arch

WORDS = "embedding.components.word.embedding.weight"


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


# ----------------------------------------------------------------------------- tensors
def _strip_prefix(hf_state: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """``bert.embeddings...`` (BertFor*) and ``embeddings...`` (BertModel) -> one naming; the prefix seen."""
    seen = prefix if any(k.startswith(prefix) for k in hf_state) else ""
    return {k[len(seen):] if seen and k.startswith(seen) else k: v for k, v in hf_state.items()}, seen


def _expected_state(config: Config, vocab_size: int) -> tuple[dict[str, torch.Tensor], set[str]]:
    """A freshly built model's state (initial values for heads the source lacks) and its tied keys."""
    from uer.model_builder import build_model

    model = build_model(config, vocab_size=vocab_size)
    words = model.embedding.word.weight
    tied = {name for name, p in model.named_parameters(remove_duplicate=False) if p is words and name != WORDS}
    return model.state_dict(), tied


def check_sizes(arch: Arch, hf_config: dict[str, Any], config: Config, where: str) -> None:
    """``config.json`` against the uer config; every disagreement is named."""
    problems = [f"{key}: {hf_config[key]!r} in {where}, {value!r} in {config.source}"
                for key, value in arch.sizes(config).items() if key in hf_config and hf_config[key] != value]
    act_key = "activation_function" if arch.name == "gpt2" else "hidden_act"
    problems = [p for p in problems if not p.startswith(act_key)]
    if act_key in arch.sizes(config):  # several HF names mean the same function
        from uer.convert.archs import HF_ACTS

        act = hf_config.get(act_key, "gelu_new" if arch.name in ("gpt2", "albert") else "gelu")
        if HF_ACTS.get(act) != config.encoder.cfg.act:
            problems.append(f"{act_key}: {act!r} in {where}, encoder.act {config.encoder.cfg.act!r} in {config.source}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {hf_config['position_embedding_type']!r} is not supported (only 'absolute')")
    if problems:
        raise ConversionError(f"{where} does not fit {config.source}:\n  " + "\n  ".join(problems))


def _is_head(arch: Arch, key: str) -> bool:
    return key.split(".")[0] in arch.heads


def hf_to_uer(
    hf_state: dict[str, torch.Tensor], config: Config, arch: Arch | str = "bert", hf_config: dict[str, Any] | None = None,
    where: str = "HF state",
) -> tuple[dict[str, torch.Tensor], ConversionReport, dict[str, Any]]:
    """HF tensors -> a uer state dict that ``load_state`` accepts for a model built from ``config``.

    Returns ``(uer_state, report, meta)``; ``meta`` (architecture, prefix, HF config, carried and
    derived tensors) is what :func:`uer_to_hf` needs to give the HF checkpoint back exactly.
    """
    arch = arch_named(arch) if isinstance(arch, str) else arch
    arch.check(config)
    if hf_config is not None:
        check_sizes(arch, hf_config, config, where)
    src, prefix = _strip_prefix(hf_state, arch.prefix)
    if arch.words_hf not in src:
        raise ConversionError(f"{where} has no {arch.prefix}{arch.words_hf}: not a {arch.title} checkpoint "
                              f"(first keys: {', '.join(list(hf_state)[:5])})")
    vocab_size = src[arch.words_hf].shape[0]
    expected, tied = _expected_state(config, vocab_size)
    report = ConversionReport()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    keep: dict[str, Any] = {}
    if hf_config is not None and hf_config.get("model_type"):
        keep["model_type"] = hf_config["model_type"]
    for rule in arch.rules(config):
        if rule.uer in expected and rule.uer not in out and all(k in src for k in rule.hf):
            out[rule.uer] = rule.to_uer([src[k] for k in rule.hf], keep)
            used.update(rule.hf)

    # Derived tensors: checked, then regenerated on the way back.
    derived: dict[str, str] = {}
    for key, tensor in src.items():
        try:
            how = arch.derived(key, tensor)
        except ConversionError as exc:
            raise ConversionError(f"{where}: {exc}") from None
        if how is not None:
            derived[key] = how
    for alias, original in arch.aliases:
        if alias in src and original in src:
            if not torch.equal(src[alias], src[original]):
                raise ConversionError(f"{where}: {alias} differs from {original}; uer has one tensor for both")
            derived[alias] = original
    for uer_key, hf_key in arch.decoders:
        if hf_key not in src or uer_key not in expected:
            continue
        if uer_key in tied:
            if not torch.equal(src[hf_key], src[arch.words_hf]):
                raise ConversionError(f"{where}: {hf_key} differs from the word embedding, but the config ties them "
                                      "(set the target's tie_weights: false)")
            derived[hf_key] = arch.words_hf
        else:
            out[uer_key] = src[hf_key]
            used.add(hf_key)
    if arch.zero_bias is not None and arch.zero_bias in expected:
        out[arch.zero_bias] = torch.zeros_like(expected[arch.zero_bias])  # GPT-2's LM head has no bias
    used.update(derived)
    for key in tied:  # e.g. the MLM decoder: the same tensor as the word embedding
        if WORDS in out:
            out[key] = out[WORDS]

    # What the source does not cover, and what the config has no place for.
    missing = sorted(set(expected) - set(out))
    base_missing = [k for k in missing if not k.startswith("target.")]
    extra = sorted(k for k in src if k not in used)
    base_extra = [k for k in extra if k.startswith(arch.base) and not k.endswith(arch.carried_ok)]
    if base_missing or base_extra:
        lines = [f"{where} does not fit {config.source}:"]
        if base_missing:
            lines.append(f"  uer tensors with no source ({len(base_missing)}): {', '.join(base_missing[:20])}")
        if base_extra:
            lines.append(f"  source tensors with no place in the config ({len(base_extra)}): {', '.join(prefix + k for k in base_extra[:20])}")
        raise ConversionError("\n".join(lines))
    shapes = [f"{k}: source {tuple(out[k].shape)} vs config {tuple(expected[k].shape)}"
              for k in out if k in expected and out[k].shape != expected[k].shape]
    if shapes:
        raise ConversionError(f"{where} does not fit {config.source}:\n  " + "\n  ".join(shapes[:20]))
    for key in missing:
        out[key] = expected[key]
    def named(k: str) -> str:
        return k if _is_head(arch, k) else prefix + k

    report.initialised = [k for k in missing if k not in tied]
    report.unmapped = [named(k) for k in extra]
    report.derived = [named(k) for k in derived]
    report.converted = len(out) - len(missing)
    meta = {
        "arch": arch.name,
        "prefix": prefix,
        "config": dict(hf_config) if hf_config is not None else None,
        "carried": {k: src[k] for k in extra},  # heads the config has no place for, given back unchanged
        "derived": derived,
        "initialised": report.initialised,
        "keep": keep,
    }
    return out, report, meta


def tied_target_names(config: Config) -> set[str]:
    """The targets whose output layer is the word embedding (MLM, LM with ``tie_weights``)."""
    from uer.targets.configs import LmConfig, MlmConfig

    return {s.name for s in config.target.components if isinstance(s.cfg, (MlmConfig, LmConfig)) and s.cfg.tie_weights}


def _head_names(arch: Arch, keys: list[str]) -> set[str]:
    names: set[str] = set()
    for k in keys:
        if _is_head(arch, k):
            parts = k.split(".")
            names.update({parts[0], ".".join(parts[:2])})
    return names


def uer_to_hf(
    uer_state: dict[str, torch.Tensor], config: Config, meta: dict[str, Any] | None = None, arch: Arch | str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], ConversionReport]:
    """A uer state dict -> ``(hf_state, hf_config_json, report)``; ``meta`` from :func:`hf_to_uer` if any.

    The architecture is ``arch``, else the one the model came from, else the one its config fits."""
    meta = meta or {}
    if isinstance(arch, str):
        arch = arch_named(arch)
    arch = arch or (ARCHS[meta["arch"]] if "arch" in meta else ARCHS["bert"] if meta else guess_arch(config))
    arch.check(config)
    keep = dict(meta.get("keep") or {})
    report = ConversionReport()
    skip = set(meta.get("initialised", ()))
    report.skipped = sorted(skip & set(uer_state))
    state = {k: v for k, v in uer_state.items() if k not in skip}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in arch.rules(config):
        if rule.uer in state and rule.uer not in used:
            out.update(zip(rule.hf, rule.to_hf(state[rule.uer], keep)))
            used.add(rule.uer)
    tied_targets = tied_target_names(config)
    for uer_key, hf_key in arch.decoders:
        if uer_key not in state:
            continue
        if uer_key.split(".")[2] in tied_targets:  # HF ties it to the word embedding again on load
            if not torch.equal(state[uer_key], state[WORDS]):
                raise ConversionError(f"{uer_key} differs from {WORDS} although the config ties them")
        else:
            out[hf_key] = state[uer_key]
        used.add(uer_key)
    if arch.zero_bias is not None and arch.zero_bias in state:
        if bool(state[arch.zero_bias].any()):
            raise ConversionError(f"{arch.zero_bias} is not zero, but {arch.title}'s LM head has no bias: "
                                  "exporting would change the model's predictions")
        used.add(arch.zero_bias)
    for key in sorted(set(state) - used):  # the tied decoder of a head that was never converted goes with it
        name = key.split(".")[2] if key.startswith("target.components.") else None
        if name in tied_targets and key.endswith("decoder.weight") and any(s.startswith(f"target.components.{name}.") for s in skip):
            used.add(key)
    unknown = sorted(set(state) - used)
    if unknown:
        raise ConversionError(f"uer tensors with no {arch.title} counterpart ({len(unknown)}): {', '.join(unknown[:20])}")
    carried = meta.get("carried", {})
    if carried:
        report.notes.append(f"given back from the checkpoint's extra, unchanged ({len(carried)}): {', '.join(sorted(carried))}")
    out.update(carried)
    for hf_key, source in meta.get("derived", {}).items():
        positions = out.get("embeddings.position_embeddings.weight")  # the buffers' length (BERT family)
        if source == "arange" and positions is not None:
            out[hf_key] = torch.arange(positions.shape[0]).unsqueeze(0)
        elif source == "zeros" and positions is not None:
            out[hf_key] = torch.zeros(1, positions.shape[0], dtype=torch.long)
        elif source in out:
            out[hf_key] = out[source]
    heads = _head_names(arch, list(out))
    prefix = arch.prefix if any(_is_head(arch, k) for k in out) else meta.get("prefix", "")
    report.derived = sorted(k if _is_head(arch, k) else prefix + k for k in meta.get("derived", {}))
    hf_config = dict(meta.get("config") or {})
    made = arch.hf_config(config, out, keep)
    architecture = arch.architecture(heads, keep)
    if not (meta.get("config") and architecture.endswith("Model")):  # keep a base model's own class name
        made["architectures"] = [architecture]
    hf_config.update(made)
    tied = any(uer_key in state and uer_key.split(".")[2] in tied_targets for uer_key, _ in arch.decoders)
    if arch.decoders and any(k in state for k, _ in arch.decoders):
        hf_config["tie_word_embeddings"] = tied
    hf_config.setdefault("initializer_range", 0.02)
    if arch.name != "gpt2":
        hf_config.setdefault("pad_token_id", 0)
    if arch.name == "bert" and architecture == "BertModel" and not any(k.startswith("pooler.") for k in out):
        hf_config["add_pooling_layer"] = False
    # Clone: safetensors refuses tensors that share memory (the split qkv, tied weights).
    hf_state = {(k if _is_head(arch, k) else prefix + k): v.detach().clone().contiguous() for k, v in out.items()}
    report.converted = len(hf_state)
    return hf_state, hf_config, report
