"""A model config: YAML -> frozen dataclasses, every component checked against its registry.

Precedence is explicit: dataclass defaults < YAML file < overrides (``section.key=value``).
An unknown key, a wrong type or an out-of-range value is a :class:`ConfigError` naming the file,
the line, the key and what is valid. Component sections (``encoder``, ``subencoder``,
``embedding.components``, ``target.components``, ``tokenizer``) are checked against their
registries, so a typo in a module name fails at load time, not in the middle of a run.

Layering: :mod:`uer.schema` (YAML with lines, typed conversion) < :mod:`uer.registry` < the
registries with their torch-free config declarations (``uer.<family>.configs``) < this module
< :mod:`uer.model_builder`. Loading a config never imports torch.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from uer.choices import Precision, Scheduler
from uer.embeddings import EMBEDDINGS
from uer.encoders import ENCODERS
from uer.registry import Registry
from uer.schema import (  # noqa: F401  (re-exported: callers import these from uer.config)
    ConfigError, Count, Epsilon, Fraction, NonNegative, Positive, Probability, Range, Size, Spec, apply_overrides, from_dict, keep_lines,
    read_yaml, source_prefix, to_dict, where, RUNTIME,
)
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS
from uer.tokenizers import TOKENIZERS, TokenizerConfig


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class EmbeddingConfig:
    components: tuple[Spec, ...] = ()  # summed; ``word`` comes first (default: word, pos, seg)
    emb_size: Size | None = None  # None: the encoder's hidden_size; another value factorises (ALBERT)
    dropout: Probability = 0.1
    layernorm: Literal["normal", "rms", "none"] = "normal"
    layernorm_eps: Epsilon = 1e-12


DEFAULT_EMBEDDING = ("word", "pos", "seg")


@dataclass(frozen=True)
class TargetConfig:
    components: tuple[Spec, ...] = ()  # losses add up


@dataclass(frozen=True)
class TrainConfig:
    """Pre-training defaults (``pretrain.py`` flags override them)."""

    batch_size: Size = 32
    seq_length: Size = 128
    total_steps: Size = 10000
    learning_rate: NonNegative = 1e-4
    warmup: Fraction = 0.1  # fraction of total_steps
    scheduler: Scheduler = "linear"
    weight_decay: NonNegative = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    clip_grad_norm: NonNegative = 1.0
    accumulation_steps: Size = 1
    precision: Precision = "fp32"
    report_steps: Size = 100
    save_checkpoint_steps: Count = 1000  # 0: only at the end (as --save_checkpoint_steps 0 says)
    seed: int = 7


MIN_SEQ_LENGTH = 4  # the shortest fine-tuning row: [CLS] a [SEP] plus one token of text_b (pairs)
SeqLength = Annotated[int, Range(low=MIN_SEQ_LENGTH)]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning defaults of an early-exit task (the ``fastbert`` section for ``run_fastbert.py``,
    ``ner`` for ``run_ner.py``; their flags override them)."""

    epochs_num: Size = 3  # stage 1 (fine-tuning)
    distill_epochs_num: Count = 3  # 0: no self-distillation stage
    batch_size: Size = 32
    seq_length: SeqLength = 128
    learning_rate: Positive | None = None  # None: uer.recipe's rate for the model's size (5e-5 at BERT-base)
    distill_learning_rate: Positive | None = None  # None: twice that
    warmup: Fraction = 0.1
    weight_decay: NonNegative = 0.01
    report_steps: Size = 100
    seed: int = 7


@dataclass(frozen=True)
class Config:
    embedding: EmbeddingConfig
    encoder: Spec
    target: TargetConfig
    subencoder: Spec | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fastbert: FinetuneConfig = field(default_factory=FinetuneConfig)
    ner: FinetuneConfig = field(default_factory=FinetuneConfig)
    # Where it came from, for messages. Runtime metadata: not compared, never saved.
    source: str = field(default="<dict>", compare=False, metadata=RUNTIME)

    @property
    def emb_size(self) -> int:
        """The embedding width: ``embedding.emb_size``, or the encoder's ``hidden_size`` when unset."""
        return self.embedding.emb_size if self.embedding.emb_size is not None else self.encoder.cfg.hidden_size

    @property
    def position_limit(self) -> int | None:
        """The longest input the embedding's position tables hold (None: the model has none)."""
        limits = [spec.cfg.max_seq_length for spec in self.embedding.components
                  if "max_seq_length" in {f.name for f in dataclasses.fields(spec.cfg)}]
        return min(limits) if limits else None

    def with_target(self, *components: Any) -> "Config":
        """The same model with other targets (e.g. ``fastbert`` on a pre-trained backbone)."""
        return config_from_dict({**to_dict(self), "target": {"components": list(components)}}, self.source)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata.get("runtime"))
REQUIRED = tuple(f.name for f in dataclasses.fields(Config) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


# ----------------------------------------------------------------------------- resolution
def _specs(registry: Registry, raw: Any, at: str) -> tuple[Spec, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"{at}: expected a non-empty list of {registry.kind} names")
    specs = tuple(registry.spec(item, f"{at}[{i}]") for i, item in enumerate(raw))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{at}: a {registry.kind} is listed twice: {names}")
    return specs


def _composite(data: Any, registry: Registry, cls: type, at: str, default: tuple[str, ...] | None) -> Any:
    """``embedding`` / ``target``: a mapping with ``components`` (a list of specs) and the
    section's own keys, or, for short, just a list or a single component name."""
    if isinstance(data, (str, list)):  # `target: mlm`, `target: [mlm, nsp]`
        data = {"components": [data] if isinstance(data, str) else data}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{at}: expected a mapping with 'components' (or a list of {registry.plural}), got {type(data).__name__}")
    raw = data.get("components", list(default) if default is not None else None)
    components = _specs(registry, raw, where(data, "components", at) if "components" in data else at)
    own = from_dict(cls, keep_lines({k: v for k, v in data.items() if k != "components"}, data), at)
    return dataclasses.replace(own, components=components)


def _tokenizer(data: Any, at: str) -> TokenizerConfig:
    if isinstance(data, str):  # `tokenizer: char`
        data = {"name": data}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{at}: expected a tokenizer name or mapping, got {type(data).__name__}")
    name = data.get("name", TokenizerConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"{where(data, 'name', at)}: expected a tokenizer name, got {name!r}")
    entry = TOKENIZERS.entry(name, where(data, "name", at) if "name" in data else at)
    return from_dict(entry.config, data, f"{at}({name})")


def resolve_specs(data: dict, source: str) -> Config:
    """Nested dict (from YAML) -> :class:`Config`, every component checked against its registry."""
    at = source_prefix(data, source)
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ConfigError(
            f"{at}{where(data, unknown[0], 'config')}: unknown section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}"
        )
    for required in REQUIRED:
        if required not in data:
            raise ConfigError(f"{source}: missing section {required!r}")
    subencoder = data.get("subencoder")
    return Config(
        embedding=_composite(data["embedding"], EMBEDDINGS, EmbeddingConfig, f"{at}embedding", DEFAULT_EMBEDDING),
        encoder=ENCODERS.spec(data["encoder"], f"{at}encoder"),
        target=_composite(data["target"], TARGETS, TargetConfig, f"{at}target", None),
        subencoder=None if subencoder is None else SUBENCODERS.spec(subencoder, f"{at}subencoder"),
        tokenizer=_tokenizer(data.get("tokenizer"), f"{at}tokenizer"),
        train=from_dict(TrainConfig, data.get("train") or {}, f"{at}train"),
        fastbert=from_dict(FinetuneConfig, data.get("fastbert") or {}, f"{at}fastbert"),
        ner=from_dict(FinetuneConfig, data.get("ner") or {}, f"{at}ner"),
        source=source,
    )


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """A :class:`Config` from a nested dict (a saved ``to_dict`` or YAML data)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    return resolve_specs(data, source)


def load_config(path: str | Path, overrides: typing.Iterable[str] | dict[str, Any] = ()) -> Config:
    """Read a YAML model config, e.g. ``load_config("models/bert/base.yaml", ["encoder.layers_num=2"])``."""
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return config_from_dict(data, str(path))
