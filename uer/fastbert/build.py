"""A FastBERT model = a backbone config with the ``fastbert`` target, plus pre-trained backbone weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from uer.checkpoint import CheckpointError, load_state, read_checkpoint
from uer.config import Config
from uer.embeddings.position import PositionConfig
from uer.embeddings.sinusoidal import SinusoidalConfig
from uer.model_builder import build_model

BACKBONE_PREFIXES = ("embedding.", "subencoder.", "encoder.")


def fastbert_config(config: Config, **target_fields: Any) -> Config:
    """``config`` with its targets replaced by ``fastbert`` (``branch_size``, ``pooling``, ...)."""
    return config.with_target({"name": "fastbert", **target_fields})


def position_limit(config: Config) -> int | None:
    """The longest input the embedding's position table holds (None: the model has no position table)."""
    limits = [s.cfg.max_seq_length for s in config.embedding.components
              if isinstance(s.cfg, (PositionConfig, SinusoidalConfig))]
    return min(limits) if limits else None


def build_fastbert(config: Config, vocab_size: int, labels_num: int) -> nn.Module:
    if [s.name for s in config.target.components] != ["fastbert"]:
        raise ValueError(f"{config.source}: expected target [fastbert], got {[s.name for s in config.target.components]}")
    return build_model(config, vocab_size=vocab_size, labels_num=labels_num)


def load_backbone(model: nn.Module, path: str | Path, config_source: str) -> dict[str, list[str]]:
    """Load the embedding/encoder weights of a uer checkpoint into ``model``.

    Strict about the backbone: every backbone key of ``model`` must be in the checkpoint with
    the same shape, and the checkpoint may hold no backbone key the model lacks. Its targets
    (e.g. MLM) are ignored; the model's targets keep their fresh initialisation. Returns the
    keys of both kinds so the caller can say so.
    """
    state = read_checkpoint(path)["model"]
    own = model.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith(BACKBONE_PREFIXES)}
    if not backbone:
        raise CheckpointError(f"{path} holds no embedding./encoder. weights")
    merged = {**{k: v for k, v in own.items() if not k.startswith(BACKBONE_PREFIXES)}, **backbone}
    load_state(model, merged, f"{path} (backbone)", config_source)  # strict: names every misfit
    return {
        "fresh": sorted(k for k in own if not k.startswith(BACKBONE_PREFIXES)),
        "ignored": sorted(k for k in state if not k.startswith(BACKBONE_PREFIXES)),
    }
