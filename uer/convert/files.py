"""HuggingFace folders <-> uer checkpoints: weights, configs and tokenizer files, written safely.

    convert_hf_to_uer("hf_dir/", "out/model.pt")      # detects the architecture; writes out/model.yaml too
    convert_uer_to_hf("out/model.pt", "hf_out/")       # config.json, model.safetensors, the tokenizer's files

The tensors go through :mod:`uer.convert.hf`; task models (run_fastbert.py, run_ner.py) through
:mod:`uer.convert.heads`. Files already at the output are never replaced by something else without
``force``; every file is written atomically.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from uer.checkpoint import checkpoint_config, load_state, read_checkpoint, save_checkpoint, why_unreadable
from uer.config import Config, load_config
from uer.convert.archs import ARCHS, Arch, ConversionError, arch_for, arch_named
from uer.convert.heads import export_task_model
from uer.convert.hf import ConversionReport, _strip_prefix, hf_to_uer, uer_to_hf
from uer.utils.atomic import atomic_open
from uer.utils.cli import UsageError, output_dir as checked_output_dir, output_file
from uer.utils.paths import resolve_path


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
