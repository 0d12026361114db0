"""Every subencoder's name and typed config (torch-free). The module named in ``declare``
registers the class that implements it."""
from dataclasses import dataclass
from uer.choices import Activation, Pooling
from uer.schema import Size
from uer.subencoders.registry import SUBENCODERS


@dataclass(frozen=True)
class SubencoderConfig:
    """What every subencoder has: how many characters of a token it reads."""

    max_chars: Size = 16


@SUBENCODERS.declare("avg", module="uer.subencoders.avg")
@dataclass(frozen=True)
class AvgConfig(SubencoderConfig):
    pass


@SUBENCODERS.declare("cnn", module="uer.subencoders.cnn")
@dataclass(frozen=True)
class CnnSubencoderConfig(SubencoderConfig):
    char_emb_size: Size = 64
    kernel_size: Size = 3
    act: Activation = "relu"


@dataclass(frozen=True)
class RnnSubencoderConfig(SubencoderConfig):
    char_emb_size: Size = 64
    layers_num: Size = 1
    pooling: Pooling = "last"  # last = the state after the token's last char


SUBENCODERS.declare("lstm", module="uer.subencoders.rnn")(RnnSubencoderConfig)
SUBENCODERS.declare("gru", module="uer.subencoders.rnn")(RnnSubencoderConfig)
