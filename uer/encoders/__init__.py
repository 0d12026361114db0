"""Encoders. Importing this package is torch-free: it holds the registry and the declared configs
(:mod:`uer.encoders.configs`); an encoder's module is imported when the builder first builds it.
Adding one is one new file plus its config in configs.py."""
from uer.encoders.registry import ENCODERS
from uer.encoders import configs  # noqa: F401  (declares every name)

__all__ = ["ENCODERS"]
