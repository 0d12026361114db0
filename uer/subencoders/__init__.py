from uer.subencoders.registry import SUBENCODERS
from uer.subencoders.chars import Subencoder, char_vocabulary
from uer.subencoders import avg, rnn, cnn  # noqa: F401

__all__ = ["SUBENCODERS", "Subencoder", "char_vocabulary"]
