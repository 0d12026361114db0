"""The registry's own contract: duplicates, unknown names, base classes, lazy modules."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import nn

from uer.config import ConfigError
from uer.encoders import ENCODERS
from uer.registry import Registry, RegistryError
from uer.targets import TARGETS


@dataclass(frozen=True)
class FooConfig:
    width: int = 3


class Base(nn.Module):
    pass


def fresh() -> Registry:
    return Registry("widget", base=f"{__name__}:Base")


def test_a_duplicate_name_is_an_error():
    reg = fresh()
    reg.register("foo", config=FooConfig)(type("Foo", (Base,), {}))
    with pytest.raises(RegistryError, match="widget 'foo' is registered twice"):
        reg.register("foo", config=FooConfig)(type("Foo2", (Base,), {}))
    reg.declare("bar", module="nowhere")(FooConfig)
    with pytest.raises(RegistryError, match="widget 'bar' is declared twice"):
        reg.declare("bar", module="nowhere")(FooConfig)
    with pytest.raises(RegistryError, match="registered twice"):  # the real registries too
        ENCODERS.register("transformer", config=ENCODERS.entry("transformer").config)(ENCODERS.cls("transformer"))


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown target 'msm'; valid targets: bilm, cls, fastbert, lm, mlm, nsp, sop"):
        TARGETS.spec("msm", "target")
    with pytest.raises(ConfigError, match="model.yaml:3: unknown widget 'x'; valid widgets: foo"):
        reg = fresh()
        reg.register("foo", config=FooConfig)(type("Foo", (Base,), {}))
        reg.entry("x", "model.yaml:3")


def test_a_class_must_extend_the_base_and_match_its_declaration():
    reg = fresh()
    with pytest.raises(RegistryError, match="widget 'foo': Foo must extend Base"):
        reg.register("foo", config=FooConfig)(type("Foo", (nn.Module,), {}))
    reg.declare("bar", module="nowhere")(FooConfig)
    other = dataclass(frozen=True)(type("OtherConfig", (), {}))
    with pytest.raises(RegistryError, match="declared with FooConfig, registered with OtherConfig"):
        reg.register("bar", config=other)(type("Bar", (Base,), {}))
    cfg_reg = Registry("widget", config_base=FooConfig)
    with pytest.raises(RegistryError, match="config OtherConfig must extend FooConfig"):
        cfg_reg.declare("baz", module="nowhere")(other)


def test_a_declared_module_that_does_not_register_its_name_is_an_error():
    reg = fresh()
    reg.declare("foo", module="uer.schema")(FooConfig)  # imports fine, registers nothing
    with pytest.raises(RegistryError, match="declared for module uer.schema, which does not register it"):
        reg.cls("foo")


def test_spec_checks_fields_and_instantiate_passes_sizes_by_keyword():
    reg = fresh()

    @reg.register("foo", config=FooConfig)
    class Foo(Base):
        def __init__(self, cfg, *, size):
            super().__init__()
            self.cfg, self.size = cfg, size

    spec = reg.spec({"name": "foo", "width": 5}, "widget")
    assert spec.cfg == FooConfig(width=5)
    built = reg.instantiate(spec, size=7)
    assert isinstance(built, Foo) and (built.cfg.width, built.size) == (5, 7)
    with pytest.raises(ConfigError, match=r"widget\(foo\).wdth: unknown key 'wdth'; valid keys: width"):
        reg.spec({"name": "foo", "wdth": 5}, "widget")
    with pytest.raises(ConfigError, match="a widget needs a 'name'"):
        reg.spec({"width": 5}, "widget")
