"""The target registry, torch-free: names and configs are declared in :mod:`uer.targets.configs`."""
from uer.registry import Registry

TARGETS: Registry = Registry("target", base="uer.targets.base:Target")
