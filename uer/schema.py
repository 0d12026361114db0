"""YAML with line numbers -> frozen dataclasses, and errors that say where.

The bottom layer of configuration: it knows nothing about uer's sections or registries (that is
:mod:`uer.config`), imports nothing of uer, and never imports torch.

- :func:`read_yaml` keeps the line of every key (:class:`Located` mappings); a key written twice,
  a file that is not UTF-8 text, a directory, bad YAML: each is a :class:`ConfigError` naming the file.
- :func:`from_dict` builds a dataclass, checking every value against its annotation: ``int``,
  ``float``, ``bool``, ``str``, ``Literal``, unions, tuples, nested dataclasses and ``Annotated``
  ranges (:data:`Size`, :data:`Probability` ...). An unknown key names the valid ones.
- :func:`where` / :func:`where_mapping` / :func:`source_prefix` / :func:`keep_lines` turn a
  key of a mapping into ``file:line: section.key`` for messages.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml


class ConfigError(ValueError):
    """A user mistake in a config: the message names the key, the place and the valid choices."""


# ----------------------------------------------------------------------------- YAML with lines
class Located(dict):
    """A mapping read from YAML that remembers the line of each key and the file it came from."""

    lines: dict[str, int]
    source: str


def _located(items: dict, lines: dict[str, int], source: str) -> Located:
    out = Located(items)
    out.lines, out.source = lines, source
    return out


class _Loader(yaml.SafeLoader):
    source = "<config>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    items: dict = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in items:
            raise ConfigError(f"{loader.source}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
        items[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _located(items, lines, loader.source)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a YAML file (``{}`` for an empty file), every mapping :class:`Located`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a config is a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    loader_cls = type("_FileLoader", (_Loader,), {"source": str(path)})
    try:
        data = yaml.load(text, Loader=loader_cls)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def keep_lines(items: dict, original: Any) -> dict:
    """A filtered copy of a YAML mapping that still knows where its keys came from."""
    if isinstance(original, Located):
        return _located(items, original.lines, original.source)
    return items


def source_prefix(data: Any, source: str) -> str:
    """``""`` for YAML data (its messages carry file:line); ``"<source>: "`` for a plain dict."""
    return "" if isinstance(data, Located) else f"{source}: "


def where(data: Any, key: str, path: str) -> str:
    """``file:line: path.key`` for a YAML key, ``file (override): path.key`` for one set on the
    command line, ``path.key`` for a plain dict."""
    if not isinstance(data, Located):
        return f"{path}.{key}"
    line = data.lines.get(key)
    if line is None:  # a key that came from a command-line override, not from the file
        return f"{data.source} (override): {path}.{key}"
    return f"{data.source}:{line}: {path}.{key}"


def where_mapping(data: Any, path: str) -> str:
    """``file:line: path`` pointing at the first key of a YAML mapping (for whole-object errors)."""
    if isinstance(data, Located) and data.lines:
        return f"{data.source}:{min(data.lines.values())}: {path}"
    if isinstance(data, Located):
        return f"{data.source}: {path}"
    return path


# ----------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    """A closed or half-open interval for ``Annotated[int | float, Range(...)]`` config fields."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


Size = Annotated[int, Range(low=1)]  # a count or a width: >= 1
Count = Annotated[int, Range(low=0)]  # may be 0 (e.g. epochs of an optional stage)
Probability = Annotated[float, Range(0.0, 1.0, high_open=True)]  # a dropout rate: [0, 1)
Fraction = Annotated[float, Range(0.0, 1.0)]  # e.g. warm-up as a share of the steps: [0, 1]
NonNegative = Annotated[float, Range(low=0.0)]
Epsilon = Annotated[float, Range(low=1e-30)]  # > 0
Positive = Annotated[float, Range(low=0.0, low_open=True)]  # e.g. a learning rate: > 0


# ----------------------------------------------------------------------------- typed conversion
def _check(value: Any, tp: Any, at: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *constraints = typing.get_args(tp)
        value = _check(value, base, at)
        for constraint in constraints:
            if isinstance(constraint, Range) and not constraint.contains(value):
                raise ConfigError(f"{at}: {value!r} is not {constraint}")
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{at}: {value!r} is not one of {', '.join(map(repr, choices))}")
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
                return _check(value, arg, at)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{at}: {value!r} fits none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{at}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(v, args[0], f"{at}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{at}: expected {len(args)} values, got {len(value)}")
        return tuple(_check(v, a, f"{at}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{at}: expected a mapping, got {value!r}")
        return from_dict(tp, value, at)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{at}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{at}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{at}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{at}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{at}: config type {tp!r} is not supported")  # a bug in a dataclass, not a user error


def from_dict(cls: type, data: dict, path: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types and out-of-range values are
    errors naming ``file:line: path.key``. A ``ConfigError`` raised by the dataclass's own
    ``__post_init__`` (a rule between fields) is prefixed with where the mapping starts."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{where(data, unknown[0], path)}: unknown key {unknown[0]!r}; "
            f"valid keys: {', '.join(fields) or '(none)'}"
        )
    kwargs = {key: _check(value, hints[key], where(data, key, path)) for key, value in data.items()}
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where_mapping(data, path)}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where_mapping(data, path)}: {exc}") from None


RUNTIME = {"runtime": True}  # field metadata: kept on the object, never written by ``to_dict``


def to_dict(obj: Any) -> Any:
    """A plain, YAML-able structure (tuples become lists; ``RUNTIME`` fields are left out)."""
    if isinstance(obj, Spec):
        return {"name": obj.name, **to_dict(obj.cfg)}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.metadata.get("runtime")}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class Spec:
    """A registered component: its name and its own typed config."""

    name: str
    cfg: Any


# ----------------------------------------------------------------------------- overrides
def parse_override(item: str) -> tuple[list[str], Any]:
    """``"encoder.layers_num=2"`` -> ``(["encoder", "layers_num"], 2)`` (the value read as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: the value {raw!r} is not valid YAML") from None
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: Iterable[str] | dict[str, Any]) -> dict:
    """``["encoder.layers_num=2"]`` or ``{"encoder.layers_num": 2}`` -> a new nested dict.

    A section given by name only (``encoder: lstm``) becomes ``{name: lstm}`` before a key of it
    is overridden."""
    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        parts = key.split(".") if isinstance(key, str) else key
        node = data
        for part in parts[:-1]:
            if part not in node or node[part] is None:
                node[part] = {}
            elif isinstance(node[part], str):  # a component given by its name
                node[part] = {"name": node[part]}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(parts)}: {part} is not a section")
        node[parts[-1]] = value
    return data
