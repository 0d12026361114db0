"""A FastBERT model = a backbone config with the ``fastbert`` target, plus pre-trained backbone weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from uer import checkpoint
from uer.config import Config
from uer.embeddings.position import PositionConfig
from uer.embeddings.sinusoidal import SinusoidalConfig
from uer.model_builder import build_model

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
    """The backbone of a uer checkpoint, heads left fresh: see ``uer.checkpoint.load_backbone``."""
    loaded = checkpoint.load_backbone(model, path, config_source, heads=False)
    return {"fresh": loaded.fresh, "ignored": loaded.ignored}
