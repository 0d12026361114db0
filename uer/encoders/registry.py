"""The encoder registry, torch-free: names and configs are declared in :mod:`uer.encoders.configs`;
every config extends :class:`EncoderConfig` (the registry refuses one that does not)."""
from dataclasses import dataclass

from uer.registry import Registry
from uer.schema import Size


@dataclass(frozen=True)
class EncoderConfig:
    hidden_size: Size = 768  # the width the builder gives the embedding's output
    layers_num: Size = 12  # the steps an early exit's branches follow


ENCODERS: Registry = Registry("encoder", base="uer.encoders.base:Encoder", config_base=EncoderConfig)
