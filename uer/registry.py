"""A small registry: a name maps to one typed config and one component class.

Two halves, so that a config can be checked without importing torch:

    # uer/encoders/configs.py (torch-free): the name, its config, the module that implements it
    @ENCODERS.declare("transformer", module="uer.encoders.transformer")
    @dataclass(frozen=True)
    class TransformerConfig(EncoderConfig): ...

    # uer/encoders/transformer.py: the class, imported the first time a transformer is built
    @ENCODERS.register("transformer", config=TransformerConfig)
    class TransformerEncoder(Encoder): ...

    spec = ENCODERS.spec({"name": "transformer", "layers_num": 2}, "encoder")   # checks the fields
    encoder = ENCODERS.instantiate(spec)                                          # the only builder

Declaring or registering a name twice is an error; an unknown name is an error that lists the
valid ones; a class that does not extend the registry's base class, or a config that does not
extend its config base, is refused when it is registered. Components take ``(cfg, **sizes)``
by keyword: their own frozen dataclass plus the sizes only the builder knows.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from uer.schema import ConfigError, Spec, from_dict, keep_lines, where

T = TypeVar("T")


class RegistryError(TypeError):
    """A programming mistake in a registration (not a user error): a duplicate, a wrong base class."""


@dataclass(frozen=True)
class Entry:
    name: str
    config: type
    module: str | None  # where the class is registered; imported on first use (None: registered already)


def _load(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """``Registry("encoder", base="uer.encoders.base:Encoder", config_base=EncoderConfig)``.

    ``base`` is a ``module:Class`` path (checked when a class registers, so this module and the
    declarations stay torch-free); ``config_base`` a class every config must extend."""

    def __init__(self, kind: str, base: str | None = None, config_base: type | None = None, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.base = base
        self.config_base = config_base
        self._entries: dict[str, Entry] = {}
        self._classes: dict[str, type[T]] = {}

    # ------------------------------------------------------------------ registration
    def _check_config(self, name: str, config: type) -> None:
        if self.config_base is not None and not issubclass(config, self.config_base):
            raise RegistryError(f"{self.kind} {name!r}: config {config.__name__} must extend {self.config_base.__name__}")

    def declare(self, name: str, module: str) -> Callable[[type], type]:
        """Decorate a config dataclass: ``name`` uses it, and ``module`` registers the class."""

        def decorator(config: type) -> type:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is declared twice: {self._entries[name].config.__name__} and {config.__name__}")
            self._check_config(name, config)
            self._entries[name] = Entry(name, config, module)
            return config

        return decorator

    def register(self, name: str, config: type) -> Callable[[type[T]], type[T]]:
        """Decorate the class that implements ``name``; ``config`` is its frozen dataclass.

        A declared name must be registered with the declared config, from the declared module."""

        def decorator(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise RegistryError(
                    f"{self.kind} {name!r} is registered twice: {self._classes[name].__module__} and {cls.__module__}"
                )
            if self.base is not None and not issubclass(cls, _load(self.base)):
                raise RegistryError(f"{self.kind} {name!r}: {cls.__name__} must extend {self.base.split(':')[1]}")
            declared = self._entries.get(name)
            if declared is None:
                self._check_config(name, config)
                self._entries[name] = Entry(name, config, None)
            elif declared.config is not config:
                raise RegistryError(f"{self.kind} {name!r} is declared with {declared.config.__name__}, registered with {config.__name__}")
            self._classes[name] = cls
            return cls

        return decorator

    # ------------------------------------------------------------------ lookups
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str, at: str = "") -> Entry:
        if name not in self._entries:
            prefix = f"{at}: " if at else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.names())}")
        return self._entries[name]

    def cls(self, name: str) -> type[T]:
        """The class that implements ``name`` (its module is imported on first use)."""
        entry = self.entry(name)
        if name not in self._classes and entry.module is not None:
            importlib.import_module(entry.module)
        if name not in self._classes:
            raise RegistryError(f"{self.kind} {name!r} is declared for module {entry.module}, which does not register it")
        return self._classes[name]

    # ------------------------------------------------------------------ specs and building
    def spec(self, raw: Any, at: str) -> Spec:
        """A name (``"lstm"``) or a mapping with ``name`` and the config's fields -> a checked :class:`Spec`."""
        if isinstance(raw, str):
            name, fields, name_at = raw, {}, at
        elif isinstance(raw, dict):
            if "name" not in raw:
                raise ConfigError(f"{at}: a {self.kind} needs a 'name' (one of {', '.join(self.names())})")
            fields = keep_lines({k: v for k, v in raw.items() if k != "name"}, raw)
            name, name_at = raw["name"], where(raw, "name", at)
            if not isinstance(name, str):
                raise ConfigError(f"{name_at}: expected a {self.kind} name, got {name!r}")
        else:
            raise ConfigError(f"{at}: expected a {self.kind} name or mapping, got {type(raw).__name__}")
        entry = self.entry(name, name_at)
        return Spec(name, from_dict(entry.config, fields, f"{at}({name})"))

    def instantiate(self, spec: Spec, **sizes: Any) -> T:
        """The component ``spec`` names, built as ``cls(spec.cfg, **sizes)``."""
        return self.cls(spec.name)(spec.cfg, **sizes)

    def build(self, raw: Any, at: str | None = None, **sizes: Any) -> T:
        """:meth:`spec` then :meth:`instantiate`, e.g. ``TARGETS.build("mlm", vocab_size=99, hidden_size=32, emb_size=32)``."""
        return self.instantiate(self.spec(raw, at or self.kind), **sizes)
