"""Targets (mlm, nsp, sop, lm, bilm, cls, fastbert, tagging, token_exit): training objectives on top of the encoder.

Importing this package is torch-free: it holds the registry and the declared configs; the
classes live in their modules (the base class in :mod:`uer.targets.base`, the sum of several
targets in :mod:`uer.targets.composite`)."""
from uer.targets.registry import TARGETS
from uer.targets import configs  # noqa: F401  (declares every name)

__all__ = ["TARGETS"]
