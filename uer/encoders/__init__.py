"""Encoders register themselves on import; adding one is one new file plus one line here."""
from uer.encoders.registry import ENCODERS
from uer.encoders.base import Encoder, EncoderContext
from uer.encoders import transformer  # noqa: F401
from uer.encoders import rnn, cnn  # noqa: F401

__all__ = ["ENCODERS", "Encoder", "EncoderContext"]
