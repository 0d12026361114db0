"""One file per checkpoint: weights plus the resolved config, written atomically, loaded strictly.

Loading never executes code from the file (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uer.config import Config, config_from_dict, to_dict
from uer.utils.atomic import atomic_open

FORMAT = "uer-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that does not exist, is not ours, or does not fit the model."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: Config, **extra: Any) -> None:
    """``extra``: plain data (optimizer state, step, RNG, vocab size, labels...) stored beside."""
    state = {"format": FORMAT, "config": to_dict(config), "model": model.state_dict(), "extra": extra}
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, not a torch file
        raise CheckpointError(f"{path} is not a readable uer checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a uer checkpoint (no '{FORMAT}' marker); "
            "convert HuggingFace weights with scripts/convert_bert_from_huggingface_to_uer.py"
        )
    if isinstance(state.get("config"), dict):
        state["config"].pop("source", None)  # checkpoints written before source became runtime-only hold it
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    return config_from_dict(state["config"], f"{path} (config)")


def load_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], where: str, config_source: str) -> None:
    """Strict load whose error names every missing, unexpected and mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{where} does not fit the model built from {config_source}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): " + "; ".join(shapes[:20]))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_model(path: str | Path, **sizes: Any):
    """Rebuild the model a checkpoint came from and load it strictly.

    Sizes (``vocab_size``, ``labels_num``, ``vocab_tokens``) default to those saved in ``extra``.
    """
    from uer.model_builder import build_model

    state = read_checkpoint(path)
    config = checkpoint_config(state, path)
    saved = {k: state["extra"][k] for k in ("vocab_size", "labels_num", "vocab_tokens") if k in state["extra"]}
    model = build_model(config, **{**saved, **sizes})
    load_state(model, state["model"], str(path), config.source)
    return model, state["extra"]
