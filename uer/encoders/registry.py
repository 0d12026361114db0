"""The encoder registry, torch-free: names and configs are declared in :mod:`uer.encoders.configs`."""
from uer.registry import Registry

ENCODERS: Registry = Registry("encoder", base="uer.encoders.base:Encoder")
