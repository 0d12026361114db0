"""HuggingFace <-> uer for BERT, RoBERTa / XLM-R, ALBERT, ELECTRA and GPT-2, tensor for tensor.

    uer_state, report, meta = hf_to_uer(hf_state, config, ARCHS["roberta"])   # plain dicts of tensors
    hf_state, hf_config, report = uer_to_hf(uer_state, config, meta)
    convert_hf_to_uer("hf_dir/", "out/model.pt")      # detects the architecture; writes out/model.yaml too
    convert_uer_to_hf("out/model.pt", "hf_out/")       # config.json, model.safetensors, the tokenizer's files

The tables (which tensor goes where, and how the configs translate) are in :mod:`uer.convert.archs`;
this module applies them. Heads present on one side only are reported, never silently lost: a uer
head the source lacks is kept as initialised (and marked, so converting back does not invent HF
tensors); an HF head the config has no place for is carried inside the checkpoint's ``extra`` so
that HF -> uer -> HF gives back every tensor bit for bit. A backbone tensor that does not fit is an
error naming it.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uer.checkpoint import checkpoint_config, load_state, read_checkpoint, save_checkpoint, why_unreadable
from uer.config import Config, load_config
from uer.convert.archs import ARCHS, Arch, ConversionError, arch_for, arch_named, guess_arch
from uer.utils.atomic import atomic_open
from uer.utils.cli import UsageError, output_dir as checked_output_dir, output_file
from uer.utils.paths import resolve_path

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


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def _vocab_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f)


def _check_vocab(vocab: Path, rows: int) -> bytes:
    lines = _vocab_lines(vocab)
    if lines != rows:
        raise ConversionError(f"{vocab} has {lines} tokens but the word embedding has {rows} rows")
    return vocab.read_bytes()


def _write_all(outputs: dict[Path, bytes], force: bool, folder: Path, what: str) -> None:
    """Write every file, or none: a file already there that holds something else is an error
    unless ``force`` (the same bytes are fine)."""
    for path in outputs:
        if path.is_dir():
            raise UsageError(f"{what} {folder}: {path} is a directory")
    clash = [p.name for p, data in outputs.items() if p.exists() and not _same_bytes(p, data)]
    if clash and not force:
        raise UsageError(f"{folder} already holds {', '.join(clash)} from something else; nothing was written: "
                         f"choose another {what}, or pass --force to replace them")
    for path, data in outputs.items():
        if not _same_bytes(path, data):
            with atomic_open(path, "wb") as f:
                f.write(data)


def _wordpiece_from_tokenizer_json(path: Path, rows: int) -> tuple[bytes, bool] | None:
    """A fast tokenizer's WordPiece as ``vocab.txt`` bytes and whether it lower-cases (None: not WordPiece)."""
    data = read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        return None
    by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))) or len(by_id) != rows:
        raise ConversionError(f"{path}: its WordPiece vocabulary has {len(by_id)} tokens (ids 0..n-1 expected), "
                              f"the word embedding {rows} rows")
    if any("\n" in t or "\r" in t or not t for t, _ in by_id):
        raise ConversionError(f"{path}: a token cannot be written one per line")
    normalizer = data.get("normalizer") or {}
    lower = bool(normalizer.get("lowercase", True)) if normalizer.get("type") == "BertNormalizer" else False
    return "".join(t + "\n" for t, _ in by_id).encode("utf-8"), lower


def _tokenizer_in(folder: Path, arch: Arch, hf_config: dict[str, Any] | None, rows: int) -> tuple[dict[str, Any] | None, dict[str, bytes], list[str]]:
    """The HF folder's tokenizer as ``(uer tokenizer section, files to write beside the checkpoint, notes)``.

    The section's paths are filled in by the caller (they point at the copies)."""
    notes: list[str] = []
    tok_cfg = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    model_type = (hf_config or {}).get("model_type", "")
    if arch.name in ("bert", "electra") and (folder / "vocab.txt").is_file():
        section = {"name": "bert", "do_lower_case": bool(tok_cfg.get("do_lower_case", True)), "vocab_path": "vocab.txt"}
        return section, {"vocab.txt": _check_vocab(folder / "vocab.txt", rows)}, notes
    if arch.name in ("bert", "electra") and (folder / "tokenizer.json").is_file():
        found = _wordpiece_from_tokenizer_json(folder / "tokenizer.json", rows)
        if found is not None:
            words, lower = found
            return {"name": "bert", "do_lower_case": lower, "vocab_path": "vocab.txt"}, {"vocab.txt": words}, notes
    if arch.name == "albert" and (folder / "spiece.model").is_file():
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        if sp.get_piece_size() != rows:
            raise ConversionError(f"{folder / 'spiece.model'} has {sp.get_piece_size()} pieces but the word embedding has {rows} rows")
        if tok_cfg.get("do_lower_case", True):
            notes.append("ALBERT's tokenizer lower-cases before sentencepiece; uer's sentencepiece tokenizer does not: "
                         "lower-case the text yourself for the same pieces")
        return {"name": "sentencepiece", "spm_model_path": "spiece.model"}, {"spiece.model": (folder / "spiece.model").read_bytes()}, notes
    if arch.name in ("roberta", "gpt2"):
        from uer.tokenizers.bytelevel_bpe import load_hf_tokenizer

        if (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
            try:
                data = load_hf_tokenizer(folder, rows)
            except ValueError as exc:
                raise ConversionError(str(exc)) from None
            return {"name": "bytelevel_bpe", "vocab_path": "tokenizer.json"}, {"tokenizer.json": data}, notes
        if model_type == "xlm-roberta" and (folder / "sentencepiece.bpe.model").is_file():
            notes.append("XLM-R's sentencepiece.bpe.model numbers its pieces with fairseq's offset; give tokenizer.json "
                         "(a fast tokenizer's file) to bring the tokenizer along")
            return None, {}, notes
    notes.append(f"no tokenizer files for {arch.name} in {folder} (looked for vocab.txt / spiece.model / tokenizer.json): "
                 "set tokenizer.* in the config")
    return None, {}, notes


def convert_hf_to_uer(
    input_path: str | Path, output_path: str | Path, config: str | Path | Config | None = None,
    arch: str | None = None, force: bool = True, what: str = "OUT",
) -> ConversionReport:
    """Read an HF folder (or weights file), write a uer checkpoint and, beside it, the tokenizer's
    files and (unless ``config`` is given) the uer config as ``<output>.yaml``.

    The architecture comes from ``config.json`` (or ``arch``). Files already beside the output are
    kept: the same content is fine, other content is an error (nothing is written) unless ``force``
    (which never applies to the tokenizer files: another vocabulary beside the output is an error)."""
    import yaml

    from uer.config import config_from_dict, to_dict
    from uer.model_builder import build_model

    output_path = output_file(output_path, what)
    hf_state, folder = read_hf_weights(input_path)
    hf_config = read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    if arch is not None:
        chosen = arch_named(arch)
    elif hf_config is not None:
        chosen = arch_for(hf_config, str(folder / "config.json"))
    elif config is not None:
        chosen = ARCHS["bert"]
    else:
        raise ConversionError(f"no config.json beside {input_path}: the architecture cannot be told; pass a uer config and an architecture")
    given = config is not None
    if given:
        cfg = config if isinstance(config, Config) else load_config(resolve_path(config))
    else:
        cfg = config_from_dict(chosen.uer_config(hf_config), f"{folder / 'config.json'} ({chosen.name})")
    rows = _strip_prefix(hf_state, chosen.prefix)[0].get(chosen.words_hf)
    if rows is None:
        raise ConversionError(f"{input_path} has no {chosen.prefix}{chosen.words_hf}: not a {chosen.title} checkpoint")
    section, files, notes = _tokenizer_in(folder, chosen, hf_config, rows.shape[0])
    out_dir = output_path.parent
    if section is not None and not given:  # the config names the copies, by absolute path (found from anywhere)
        section = {k: (str((out_dir / v).resolve()) if k.endswith("_path") else v) for k, v in section.items()}
        cfg = config_from_dict({**{k: v for k, v in to_dict(cfg).items() if k != "tokenizer"}, "tokenizer": section}, cfg.source)
    uer_state, report, meta = hf_to_uer(hf_state, cfg, chosen, hf_config, where=str(input_path))
    if hf_config is None:
        report.notes.append(f"no config.json beside {input_path}: sizes checked against the tensors only")
    model = build_model(cfg, vocab_size=rows.shape[0])
    load_state(model, uer_state, str(input_path), cfg.source)
    outputs = {out_dir / name: data for name, data in files.items()}
    for path, data in outputs.items():  # another vocabulary is never replaced, --force or not
        if path.is_file() and not _same_bytes(path, data):
            raise UsageError(f"{path} already holds another vocabulary; it is kept and nothing was written: "
                             f"choose another folder for {what}")
    yaml_path = output_path.with_suffix(".yaml")
    if not given:
        data = {k: v for k, v in to_dict(cfg).items() if k in ("embedding", "encoder", "target", "tokenizer")}
        text = f"# converted from {folder} ({chosen.name}) by python -m uer convert hf2uer\n" + yaml.safe_dump(data, sort_keys=False)
        outputs[yaml_path] = text.encode()
    if output_path.exists() and not force:
        raise UsageError(f"{what} {output_path} already exists; nothing was written: choose another path, or pass --force to replace it")
    for path in outputs:
        if path.is_dir():
            raise UsageError(f"{what} {output_path}: {path} is a directory, so the file cannot go there")
    _write_all({p: d for p, d in outputs.items() if p == yaml_path}, force, out_dir, what)
    _write_all({p: d for p, d in outputs.items() if p != yaml_path}, False, out_dir, what)
    save_checkpoint(output_path, model, cfg, vocab_size=rows.shape[0], huggingface=meta)
    report.notes += notes
    report.notes += [f"wrote {p}" for p in outputs]
    report.notes.append(f"architecture: {chosen.name}")
    return report


def _tokenizer_out(config: Config, model_path: Path, vocab_path: str | Path | None, rows: int) -> tuple[dict[str, bytes], list[str]]:
    """The uer model's tokenizer as HF files: vocab.txt (bert), spiece.model (sentencepiece), tokenizer.json."""
    tok = config.tokenizer
    if tok.name == "sentencepiece":
        candidates = [vocab_path, model_path.parent / "spiece.model", tok.spm_model_path]
        name = "spiece.model"
    elif tok.name == "bytelevel_bpe":
        candidates = [vocab_path, model_path.parent / "tokenizer.json", tok.vocab_path]
        name = "tokenizer.json"
    else:
        candidates = [vocab_path, model_path.parent / "vocab.txt", tok.vocab_path]
        name = "vocab.txt"
    found = next((resolve_path(p) for p in candidates if p is not None and resolve_path(p).is_file()), None)
    if found is None:
        tried = ", ".join(str(p) for p in candidates if p)
        return {}, [f"no vocabulary found (tried {tried}): pass --vocab_path"]
    if name == "vocab.txt":
        data = _check_vocab(found, rows)
    else:
        data = found.read_bytes()
    files = {name: data}
    from uer.tokenizers import BertTokenizerConfig

    if isinstance(tok, BertTokenizerConfig) and not tok.do_lower_case:  # transformers' BertTokenizer lower-cases by default
        files["tokenizer_config.json"] = (json.dumps({"do_lower_case": False}, indent=2) + "\n").encode()
    return files, [f"vocabulary copied from {found}"]


def convert_uer_to_hf(
    input_path: str | Path, output_dir: str | Path, vocab_path: str | Path | None = None,
    config_path: str | Path | None = None, arch: str | None = None, force: bool = False, what: str = "HF_DIR",
) -> ConversionReport:
    """A uer checkpoint -> an HF folder (``config.json``, ``model.safetensors``, the tokenizer's file).

    A run_fastbert.py or run_ner.py model goes out with its task head (:mod:`uer.convert.heads`).
    Files already in the folder are replaced only if they hold exactly what this conversion writes,
    or with ``force=True``; otherwise nothing is written."""
    from safetensors.torch import save as safetensors_bytes

    output_dir = checked_output_dir(output_dir, what)
    state = read_checkpoint(input_path)
    config = load_config(resolve_path(config_path)) if config_path is not None else checkpoint_config(state, input_path)
    extra = state["extra"]
    meta = extra.get("huggingface") or {}
    names = [s.name for s in config.target.components]
    if {"fastbert", "token_exit", "tagging", "cls"} & set(names):
        from uer.convert.heads import export_task_model

        hf_state, hf_config, report, files = export_task_model(state, config, meta, arch)
    else:
        hf_state, hf_config, report = uer_to_hf(state["model"], config, meta, arch)
        files = {}
    words = next(v for k, v in hf_state.items() if k.endswith(("embeddings.word_embeddings.weight", "wte.weight")))
    tok_files, notes = _tokenizer_out(config, Path(input_path), vocab_path, words.shape[0])
    outputs = {
        output_dir / "model.safetensors": safetensors_bytes({k: v.contiguous() for k, v in hf_state.items()}, metadata={"format": "pt"}),
        output_dir / "config.json": (json.dumps(hf_config, indent=2, sort_keys=True) + "\n").encode(),
        **{output_dir / n: d for n, d in tok_files.items()},
        **{output_dir / n: d for n, d in files.items()},
    }
    _write_all(outputs, force, output_dir, what)
    report.notes += notes
    return report
