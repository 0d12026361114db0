"""YAML -> frozen dataclasses.

Precedence is explicit: dataclass defaults < YAML file < overrides (``section.key=value``).
An unknown key or a wrong type is a :class:`ConfigError` naming the file, the line, the key and
the valid keys. Component sections (``encoder``, ``subencoder``, ``embedding.components``,
``target.components``) are checked against the registries, so a typo in a module name fails at
load time, not in the middle of a run.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A user mistake in a config: the message names the key, the place and the valid choices."""


# ----------------------------------------------------------------------------- YAML with lines
class _LineDict(dict):
    """A dict that remembers the YAML line of each key, for error messages."""

    lines: dict[str, int]
    source: str


class _Loader(yaml.SafeLoader):
    source = "<config>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    out = _LineDict()
    out.lines = {}
    out.source = loader.source
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"{loader.source}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    loader_cls = type("_FileLoader", (_Loader,), {"source": str(path)})
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader_cls)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def _with_lines(copy: dict, original: Any) -> dict:
    """A filtered copy of a YAML mapping that still knows where its keys came from."""
    if hasattr(original, "lines"):
        out = _LineDict(copy)
        out.lines, out.source = original.lines, original.source
        return out
    return copy


def _prefix(data: Any, source: str) -> str:
    """Messages about YAML data carry file:line themselves; plain dicts need their source named."""
    return "" if hasattr(data, "lines") else f"{source}: "


def _where(data: Any, key: str, where: str) -> str:
    line = getattr(data, "lines", {}).get(key)
    source = getattr(data, "source", None)
    if line is not None and source is not None:
        return f"{source}:{line}: {where}.{key}"
    if source is not None:  # a key that came from a command-line override, not from the file
        return f"{source} (override): {where}.{key}"
    return f"{where}.{key}"


# ----------------------------------------------------------------------------- typed conversion
def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: config type {tp!r} is not supported")  # a bug in a dataclass, not a user error


def from_dict(cls: type, data: dict, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{_where(data, unknown[0], where)}: unknown key {unknown[0]!r}; "
            f"valid keys: {', '.join(fields) or '(none)'}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check(value, hints[key], _where(data, key, where))
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A plain, YAML-able structure (tuples become lists)."""
    if isinstance(obj, Spec):
        return {"name": obj.name, **to_dict(obj.cfg)}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Spec:
    """A registered component: its name and its own typed config."""

    name: str
    cfg: Any


@dataclass(frozen=True)
class EmbeddingConfig:
    components: tuple[Any, ...] = ("word", "pos", "seg")  # summed; ``word`` must come first
    emb_size: int = 768  # != encoder hidden_size -> factorised (ALBERT) projection
    dropout: float = 0.1
    layernorm: Literal["normal", "rms", "none"] = "normal"
    layernorm_eps: float = 1e-12


@dataclass(frozen=True)
class TargetConfig:
    components: tuple[Any, ...] = ("mlm", "nsp")


@dataclass(frozen=True)
class TokenizerConfig:
    name: Literal["bert", "char", "space", "sentencepiece"] = "bert"
    vocab_path: str | None = None  # relative paths resolve against the repository root
    spm_model_path: str | None = None
    do_lower_case: bool = True
    strip_accents: bool | None = None  # None: follow do_lower_case, as BERT does
    tokenize_chinese_chars: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Pre-training defaults (``pretrain.py`` flags override them)."""

    batch_size: int = 32
    seq_length: int = 128
    total_steps: int = 10000
    learning_rate: float = 1e-4
    warmup: float = 0.1  # fraction of total_steps
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float = 1.0
    accumulation_steps: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    report_steps: int = 100
    save_checkpoint_steps: int = 1000
    seed: int = 7


@dataclass(frozen=True)
class FastBertConfig:
    """FastBERT fine-tuning defaults (``run_fastbert.py`` flags override them)."""

    epochs_num: int = 3
    distill_epochs_num: int = 3
    batch_size: int = 32
    seq_length: int = 128
    learning_rate: float = 5e-5
    distill_learning_rate: float = 1e-4
    warmup: float = 0.1
    weight_decay: float = 0.01
    report_steps: int = 100
    seed: int = 7


@dataclass(frozen=True)
class Config:
    embedding: EmbeddingConfig
    encoder: Spec
    target: TargetConfig
    subencoder: Spec | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fastbert: FastBertConfig = field(default_factory=FastBertConfig)
    source: str = "<dict>"  # where it came from, for error messages

    def with_target(self, *components: Any) -> "Config":
        """The same model with other targets (e.g. ``fastbert`` on a pre-trained backbone)."""
        return config_from_dict({**to_dict(self), "target": {"components": list(components)}}, self.source)


SECTIONS = ("embedding", "encoder", "subencoder", "target", "tokenizer", "train", "fastbert")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict, overrides: typing.Iterable[str] | dict[str, Any]) -> dict:
    """``["encoder.layers_num=2"]`` or ``{"encoder.layers_num": 2}`` -> a new nested dict."""
    import copy

    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    for key, value in items:
        path = key.split(".") if isinstance(key, str) else key
        node = data
        for part in path[:-1]:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(path)}: {part} is not a section")
        node[path[-1]] = value
    return data


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    from uer.model_builder import resolve_specs  # registries live with the components

    unknown = [k for k in data if k not in SECTIONS and k != "source"]
    if unknown:
        raise ConfigError(f"{_prefix(data, source)}{_where(data, unknown[0], 'config')}: unknown section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}")
    for required in ("embedding", "encoder", "target"):
        if required not in data:
            raise ConfigError(f"{source}: missing section {required!r}")
    return resolve_specs(data, source)


def load_config(path: str | Path, overrides: typing.Iterable[str] | dict[str, Any] = ()) -> Config:
    """Read a YAML model config, e.g. ``load_config("models/bert/base.yaml", ["encoder.layers_num=2"])``."""
    data = apply_overrides(read_yaml(path), overrides) if overrides else read_yaml(path)
    return config_from_dict(data, str(path))
