"""A small registry: a name maps to one component class and its typed config.

    ENCODERS = Registry("encoder")

    @ENCODERS.register("transformer", config=TransformerConfig)
    class TransformerEncoder(Encoder): ...

    ENCODERS.build({"name": "transformer", "layers_num": 2}, hidden_size=32)

Registering a name twice is an error; an unknown name is an error that lists the valid ones.
A component's constructor takes ``(cfg, **sizes)``: its own frozen dataclass plus the sizes
that only the builder knows (vocab size, hidden size of the previous component, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from uer.config import ConfigError, _where, _with_lines, from_dict

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    cls: type[T]
    config: type


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is registered twice: "
                    f"{self._entries[name].cls.__module__} and {cls.__module__}"
                )
            self._entries[name] = Entry(name, cls, config)
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str, where: str = "") -> Entry[T]:
        if name not in self._entries:
            at = f"{where}: " if where else ""
            raise ConfigError(f"{at}unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}")
        return self._entries[name]

    def make_config(self, spec: Any, where: str) -> Any:
        """A spec is a name or a mapping with a ``name`` key and the config's fields."""
        if isinstance(spec, str):
            name, fields = spec, {}
        elif isinstance(spec, dict):
            if "name" not in spec:
                raise ConfigError(f"{where}: a {self.kind} needs a 'name' (one of {', '.join(self.names())})")
            fields = dict(spec)
            name = fields.pop("name")
            entry = self.entry(name, _where(spec, "name", where))
            return entry, from_dict(entry.config, _with_lines(fields, spec), where=f"{where}({name})")
        else:
            raise ConfigError(f"{where}: expected a {self.kind} name or mapping, got {type(spec).__name__}")
        entry = self.entry(name, where)
        return entry, from_dict(entry.config, fields, where=f"{where}({name})")

    def build(self, spec: Any, where: str | None = None, **sizes: Any) -> T:
        """Build a component from a name or ``{"name": ..., field: value}`` mapping."""
        entry, cfg = self.make_config(spec, where or self.kind)
        return entry.cls(cfg, **sizes)
