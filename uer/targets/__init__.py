"""Targets (mlm, nsp, sop, lm, bilm, cls, fastbert): training objectives on top of the encoder.

Importing this package is torch-free: it holds the registry and the declared configs; the
classes live in their modules (the base class in :mod:`uer.targets.base`, the sum of several
targets in :mod:`uer.targets.composite`)."""
from uer.targets.registry import TARGETS
from uer.targets import configs  # noqa: F401  (declares every name)
from uer.tagging import configs as _tagging  # noqa: F401  (declares "tagging", "token_exit")

__all__ = ["TARGETS"]
