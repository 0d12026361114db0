"""Subencoders (avg, cnn, lstm, gru) over the characters of each token.

Importing this package is torch-free: it holds the registry and the declared configs; the
classes live in their modules (the base class and the char vocabulary in :mod:`uer.subencoders.chars`)."""
from uer.subencoders.registry import SUBENCODERS
from uer.subencoders import configs  # noqa: F401  (declares every name)

__all__ = ["SUBENCODERS"]
